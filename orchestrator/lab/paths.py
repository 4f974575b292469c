"""Where the lab keeps things: the cached image, the runtime folder and the generated files.

Called by every other ``orchestrator.lab`` module (and by tests and benchmarks through
``lab_paths()``). The repository root is the parent of the ``orchestrator`` package. The image
cache defaults to ``<repo>/.cache/lab-image`` (``$SELFHEAL_LAB_CACHE``), the runtime state to
``<repo>/.lab`` (``$SELFHEAL_LAB_DIR``); both are git-ignored. Nothing here touches the disk.
Two labs can run side by side on one machine (e.g. one per git worktree) when the second sets
``$SELFHEAL_LAB_NET`` (the /24 its hosts use, default ``127.0.1``) and
``$SELFHEAL_LAB_PROMETHEUS_PORT`` (default 19090) before anything imports this module.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
FILES_DIR = Path(__file__).resolve().parent / "files"

HOST_PREFIX = "vps"
ADDRESS_PREFIX = os.environ.get("SELFHEAL_LAB_NET", "127.0.1").rstrip(".") + "."
MAX_HOSTS = 50
SSH_PORT = 22
NODE_EXPORTER_PORT = 9100
DEMO_PORT = 8080
PROMETHEUS_LISTEN = f"127.0.0.1:{os.environ.get('SELFHEAL_LAB_PROMETHEUS_PORT', '19090')}"
DEMO_UNIT = "selfheal-demo.service"


def host_name(index: int) -> str:
    """``vps<index>``, the name of lab host number ``index`` (1-based)."""
    return f"{HOST_PREFIX}{index}"


def host_address(index: int) -> str:
    """The loopback address lab host number ``index`` listens on."""
    return f"{ADDRESS_PREFIX}{index}"

STATE_FILE = "state.json"  # in the lab folder; read by lab_paths() before LabPaths exists


@dataclass(frozen=True)
class LabPaths:
    """Every path the lab reads or writes, derived from three roots."""

    repo: Path
    lab_dir: Path
    cache_dir: Path

    @property
    def image_dir(self) -> Path:
        """The unpacked Debian root every host boots from (read-only, shared)."""
        return self.cache_dir / "rootfs"

    @property
    def state_file(self) -> Path:
        return self.lab_dir / STATE_FILE

    @property
    def ssh_dir(self) -> Path:
        return self.lab_dir / "ssh"

    @property
    def client_key(self) -> Path:
        """The lab's client key: root on every host accepts it."""
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """Pins every host address to its pre-generated host key (no trust on first use)."""
        return self.ssh_dir / "known_hosts"

    @property
    def hosts_dir(self) -> Path:
        return self.lab_dir / "hosts"

    def host_dir(self, name: str) -> Path:
        """Per-host files bound into the host read-only, plus the host's nspawn log."""
        return self.hosts_dir / name

    @property
    def prometheus_dir(self) -> Path:
        return self.lab_dir / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_dir / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.prometheus_dir / "data"

    @property
    def prometheus_log(self) -> Path:
        return self.prometheus_dir / "prometheus.log"

    @property
    def inventory(self) -> Path:
        return self.repo / "inventories" / "lab" / "hosts.yml"

    @property
    def settings_file(self) -> Path:
        return self.repo / "selfheal.yml"


def lab_paths() -> LabPaths:
    """The lab's paths, honouring ``$SELFHEAL_LAB_DIR`` and ``$SELFHEAL_LAB_CACHE``.

    Without ``$SELFHEAL_LAB_CACHE``, a lab that is up keeps the image it booted from (its
    state.json says which): a lab brought up with another cache is found, told about and shut
    down from any shell, never reported down while its hosts run.
    """
    lab_dir = Path(os.environ.get("SELFHEAL_LAB_DIR") or str(REPO_ROOT / ".lab")).resolve()
    cache_dir = os.environ.get("SELFHEAL_LAB_CACHE") or _booted_cache(lab_dir) or str(
        REPO_ROOT / ".cache" / "lab-image")
    return LabPaths(repo=REPO_ROOT, lab_dir=lab_dir, cache_dir=Path(cache_dir).resolve())


def _booted_cache(lab_dir: Path) -> str | None:
    """The image cache the lab in ``lab_dir`` booted from, from its state file; None if none."""
    try:
        image = json.loads((lab_dir / STATE_FILE).read_text(encoding="utf-8")).get("image")
    except (OSError, ValueError, AttributeError):
        return None
    return str(Path(image).parent) if isinstance(image, str) and image else None
