"""One cgroup subtree per lab host, so each host's systemd manages only its own units.

Called by ``fleet`` when it boots a host (``create``, ``enter_command``) and when it takes the
lab down (``remove``). With ``--keep-unit`` and no systemd on the machine to register with,
``systemd-nspawn`` splits the cgroup it was started in into ``supervisor/`` and ``payload/`` and
roots the container's cgroup namespace at ``payload/``. Started from the same cgroup, every host
got the same ``/payload``: vps1..vpsN's systemd all managed
``/payload/system.slice/selfheal-demo.service``, each saw the others' processes in "its" unit
and, when one host's unit emptied, removed the cgroup while another host was starting into it:
that start failed with ``status=219/CGROUP`` (10-29 % of restarts when three hosts restart
together; docs/lab.md). Each host is therefore started inside ``selfheal-lab/<host>`` of every
hierarchy systemd manages (the cgroup2 one and, on a hybrid machine, the v1 ``name=systemd``
one); the resource controllers are left alone.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from orchestrator.errors import PermanentError
from orchestrator.lab.paths import ADDRESS_PREFIX

log = logging.getLogger(__name__)

# One tree per lab network, so a second lab ($SELFHEAL_LAB_NET) never removes the first's.
_NET = ADDRESS_PREFIX.rstrip(".")
LAB_CGROUP = "selfheal-lab" if _NET == "127.0.1" else f"selfheal-lab-{_NET}"
MOUNTS = Path("/proc/self/mounts")
# The shell that starts a host: joins each cgroup in $SELFHEAL_LAB_CGROUPS, then becomes nspawn.
_ENTER = (
    'for cg in $SELFHEAL_LAB_CGROUPS; do echo $$ > "$cg/cgroup.procs" '
    '|| { echo "selfheal lab: cannot join cgroup $cg" >&2; exit 125; }; done; '
    'unset SELFHEAL_LAB_CGROUPS; exec "$@"'
)
ENV_VAR = "SELFHEAL_LAB_CGROUPS"


def systemd_hierarchies(mounts: str) -> list[Path]:
    """Mount points of the hierarchies a container's systemd manages, from /proc/self/mounts text.

    These are every cgroup2 mount (the whole tree on a unified machine, ``unified/`` on a hybrid
    one) and the v1 hierarchy named ``systemd``; v1 controller hierarchies (cpu, memory, ...) are
    mounted read-only in the hosts and not touched.
    """
    found = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mount_point, fs_type, options = fields[1].replace("\\040", " "), fields[2], fields[3]
        if fs_type == "cgroup2" or (fs_type == "cgroup" and "name=systemd" in options.split(",")):
            found.append(Path(mount_point))
    return found


def host_cgroups(name: str, mounts: str | None = None) -> list[Path]:
    """``<hierarchy>/selfheal-lab/<name>`` for each hierarchy of ``systemd_hierarchies``."""
    text = MOUNTS.read_text(encoding="utf-8") if mounts is None else mounts
    return [root / LAB_CGROUP / name for root in systemd_hierarchies(text)]


def create(name: str, mounts: str | None = None) -> list[Path]:
    """Create ``name``'s cgroups (``host_cgroups``) if missing; their paths.

    Raises ``PermanentError`` naming the cgroup when it cannot be made (not root, or a
    read-only cgroup file system).
    """
    made = host_cgroups(name, mounts)
    for cgroup in made:
        try:
            cgroup.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentError(
                f"cannot create the cgroup {cgroup} for lab host {name}: {exc.strerror}; "
                "the lab needs root and a writable cgroup file system"
            ) from exc
    return made


def enter_command(cgroups: list[Path], argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``argv`` inside ``cgroups``.

    The command is a small shell that moves itself into each cgroup (exit 125 if it cannot) and
    then ``exec``s ``argv``, so nspawn starts in, and splits, the host's own cgroup.
    """
    env = {**os.environ, ENV_VAR: " ".join(str(cgroup) for cgroup in cgroups)}
    return ["sh", "-c", _ENTER, f"{LAB_CGROUP}-host", *argv], env


def remove(mounts: str | None = None, timeout: float = 10.0) -> list[Path]:
    """Remove every cgroup under ``selfheal-lab/`` (deepest first); those still in use.

    Call it once the hosts are gone. The processes of a host whose init was SIGKILLed leave
    their cgroups only as the kernel reaps them, so removal is retried for up to ``timeout``
    seconds; a cgroup that still holds a process then is logged and returned.
    """
    text = MOUNTS.read_text(encoding="utf-8") if mounts is None else mounts
    tops = [root / LAB_CGROUP for root in systemd_hierarchies(text)]
    deadline = time.monotonic() + timeout
    while True:
        busy: dict[Path, OSError] = {}
        for top in tops:
            if top.is_dir():
                busy.update(_remove_tree(top))
        if not busy or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for cgroup, exc in busy.items():
        log.warning("cannot remove lab cgroup %s: %s", cgroup, exc)
    return sorted(busy)


def _remove_tree(top: Path) -> dict[Path, OSError]:
    failed = {}
    dirs = [Path(d) for d, _, _ in os.walk(top)]
    for cgroup in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        try:
            cgroup.rmdir()
        except OSError as exc:
            failed[cgroup] = exc
    return failed
