"""The per-host files bound read-only into each lab host, and the SSH trust that goes with them.

Called by ``fleet.up`` before a host boots. On the controller it generates the lab's client key
(once per lab), one ed25519 host key per host, and ``<lab>/ssh/known_hosts`` pinning each host
address to its own key, so host key checking stays on without trust on first use. It writes the
host's sshd drop-in, node_exporter and demo-app environment files and its role markers
(``layout``), and returns the
``systemd-nspawn`` ``--bind-ro`` options that put them in place.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.errors import PermanentError
from orchestrator.lab import services_postgres, services_process, services_web
from orchestrator.lab.layout import MARKER_DIR, host_groups
from orchestrator.lab.paths import DEMO_PORT, FILES_DIR, NODE_EXPORTER_PORT, LabPaths


def _keygen(key: Path, comment: str) -> None:
    if key.exists() and key.with_suffix(".pub").exists():
        return
    key.unlink(missing_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PermanentError(f"ssh-keygen failed for {key}: {result.stderr.strip()}")


def ensure_client_key(paths: LabPaths) -> Path:
    """The lab's client private key, generated on first use."""
    _keygen(paths.client_key, "selfheal-lab-client")
    return paths.client_key


def write_host_files(paths: LabPaths, name: str, address: str) -> list[str]:
    """Write ``name``'s files under ``<lab>/hosts/<name>``; the nspawn bind options for them."""
    host_dir = paths.host_dir(name)
    host_dir.mkdir(parents=True, exist_ok=True)
    host_key = host_dir / "ssh_host_ed25519_key"
    _keygen(host_key, f"root@{name}")
    sshd_template = (FILES_DIR / "sshd-lab.conf").read_text(encoding="utf-8")
    files = {
        "sshd-lab.conf": sshd_template.format(name=name, address=address),
        "prometheus-node-exporter": (
            f'ARGS="--web.listen-address={address}:{NODE_EXPORTER_PORT}"\n'
        ),
        "selfheal-demo": f"LISTEN={address}:{DEMO_PORT}\n",
    }
    # lab services' own files: name -> (text, where the host sees it)
    services = {file_name: spec for service in (services_postgres, services_process)
                for file_name, spec in service.host_files(address).items()}
    files.update({file_name: text for file_name, (text, _) in services.items()})
    for file_name, text in files.items():
        (host_dir / file_name).write_text(text, encoding="utf-8")
    markers = host_dir / "roles"
    markers.mkdir(exist_ok=True)
    for old in markers.iterdir():
        old.unlink()
    for group in host_groups(name):
        (markers / group).touch()
    binds = {
        host_key: "/etc/ssh/ssh_host_ed25519_key",
        host_key.with_suffix(".pub"): "/etc/ssh/ssh_host_ed25519_key.pub",
        host_dir / "sshd-lab.conf": "/etc/ssh/sshd_config.d/lab.conf",
        host_dir / "prometheus-node-exporter": "/etc/default/prometheus-node-exporter",
        host_dir / "selfheal-demo": "/etc/default/selfheal-demo",
        paths.client_key.with_suffix(".pub"): "/root/.ssh/authorized_keys",
        markers: MARKER_DIR,
        **{host_dir / file_name: target for file_name, (_, target) in services.items()},
    }
    return [f"--bind-ro={source}:{target}" for source, target in binds.items()] + (
        services_web.host_files(paths, name, address))


def write_known_hosts(paths: LabPaths, hosts: dict[str, str]) -> Path:
    """Pin every ``address`` of ``hosts`` (name -> address) to that host's public key."""
    lines = []
    for name, address in sorted(hosts.items()):
        pub = (paths.host_dir(name) / "ssh_host_ed25519_key.pub").read_text(encoding="utf-8")
        key_type, key = pub.split()[:2]
        lines.append(f"{address} {key_type} {key}\n")
    paths.known_hosts.write_text("".join(lines), encoding="utf-8")
    return paths.known_hosts
