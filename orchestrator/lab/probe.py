"""Talking to a lab host from the controller: SSH with the pinned key, and plain HTTP checks.

Called by ``fleet`` (readiness and ``status``), ``faults`` (to inject), and by tests and
benchmarks through ``ssh_run`` (e.g. ``ssh_run("vps2", ["systemctl", "is-active",
"selfheal-demo"])``). SSH always uses the lab key, the pinned known_hosts file with strict host
key checking and BatchMode, and never reads the user's own ssh config.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence

from orchestrator.errors import TargetError
from orchestrator.lab.paths import (
    ADDRESS_PREFIX,
    HOST_PREFIX,
    MAX_HOSTS,
    LabPaths,
    host_address,
    lab_paths,
)

log = logging.getLogger(__name__)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # lab traffic is loopback


def ssh_argv(paths: LabPaths, address: str, remote: str, timeout: float) -> list[str]:
    """The ssh command line that runs the shell command ``remote`` as root at ``address``."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(paths.client_key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={paths.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, int(timeout))}",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
        "--",
        remote,
    ]


def resolve_address(host: str) -> str:
    """The address of lab host ``host`` (``vpsN`` or ``127.0.1.N``); TargetError otherwise."""
    for prefix in (HOST_PREFIX, ADDRESS_PREFIX):
        index = host.removeprefix(prefix)
        if host.startswith(prefix) and index.isdigit() and 1 <= int(index) <= MAX_HOSTS:
            return host_address(int(index))
    raise TargetError(f"{host!r} is not a lab host name (vps1..vps{MAX_HOSTS})")


def ssh_run(
    host: str,
    command: Sequence[str] | str,
    timeout: float = 15.0,
    paths: LabPaths | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as root on lab host ``host`` over SSH; never raises on a non-zero exit.

    ``command`` is an argument list (quoted, so the remote shell sees exactly these words) or
    one string for the remote shell. A host that does not answer in ``timeout`` seconds gives
    rc 255.
    """
    paths = paths or lab_paths()
    remote = command if isinstance(command, str) else shlex.join(command)
    argv = ssh_argv(paths, resolve_address(host), remote, timeout)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        log.debug("ssh %s timed out after %.0f s", host, timeout)
        return subprocess.CompletedProcess(argv, 255, "", f"timed out: {exc}")


def ssh_ok(paths: LabPaths, host: str, timeout: float = 3.0) -> bool:
    """True when ``ssh host true`` succeeds with the pinned host key."""
    return ssh_run(host, ["true"], timeout=timeout, paths=paths).returncode == 0


def http_get(url: str, timeout: float = 2.0) -> bytes:
    """The body of ``url`` (no proxy: lab traffic stays on loopback); OSError when it fails."""
    with _DIRECT.open(url, timeout=timeout) as response:
        return bytes(response.read())


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200."""
    try:
        http_get(url, timeout)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True
