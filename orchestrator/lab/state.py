"""The lab's records and their home on disk, ``<lab>/state.json``.

Called by ``fleet`` (records what ``up`` started, reads it for ``status`` and ``down``) and by
``faults`` (appends injections). Writes are atomic (temp file + rename) and serialised with a
lock file, so a crash never leaves half a state file; a missing or corrupt file reads as None and
``down`` falls back to scanning processes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.lab.paths import LabPaths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostRecord:
    """One lab host as ``up`` started it."""

    name: str
    address: str
    pid: int | None
    log: str


@dataclass(frozen=True)
class Injection:
    """One fault injected into one host; ``injected_at`` is taken just before the fault."""

    fault: str
    host: str
    injected_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabState:
    """What ``up`` started and what has been done to it since."""

    image: str
    hosts: tuple[HostRecord, ...]
    prometheus_pid: int | None = None
    prometheus_url: str = ""
    injections: tuple[Injection, ...] = ()
    started_at: float = 0.0

    def host(self, name: str) -> HostRecord | None:
        return next((h for h in self.hosts if h.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HostStatus:
    """What ``status`` found on one host; each check (sshd, node_exporter and the services of
    the host's ``groups``) is True only when it answered just now."""

    name: str
    address: str
    pid: int | None
    running: bool
    groups: tuple[str, ...]
    checks: Mapping[str, bool]

    @property
    def healthy(self) -> bool:
        return self.running and all(self.checks.values())


@dataclass(frozen=True)
class PrometheusStatus:
    """The controller-side Prometheus: process alive and ``/-/ready`` answering."""

    url: str
    pid: int | None
    running: bool
    ready: bool


@dataclass(frozen=True)
class LabStatus:
    """The whole lab at one moment; ``healthy`` is False when anything needs a human."""

    prometheus: PrometheusStatus
    hosts: tuple[HostStatus, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> bool:
        return (
            bool(self.hosts) and self.prometheus.ready and all(host.healthy for host in self.hosts)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "prometheus": asdict(self.prometheus),
            "hosts": [{**asdict(host), "checks": dict(host.checks)} for host in self.hosts],
        }


def load_state(paths: LabPaths) -> LabState | None:
    """The recorded state, or None when there is none or it cannot be read."""
    try:
        raw = json.loads(paths.state_file.read_text(encoding="utf-8"))
        return LabState(
            image=str(raw["image"]),
            hosts=tuple(HostRecord(**host) for host in raw["hosts"]),
            prometheus_pid=raw.get("prometheus_pid"),
            prometheus_url=str(raw.get("prometheus_url", "")),
            injections=tuple(Injection(**item) for item in raw.get("injections", ())),
            started_at=float(raw.get("started_at", 0.0)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("lab state %s is unreadable (%s); treating it as absent", paths.state_file, exc)
        return None


def save_state(paths: LabPaths, state: LabState) -> None:
    """Write ``state`` atomically."""
    paths.lab_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.state_file.with_name(f".state.json.{os.getpid()}")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(paths.state_file)


def record_injection(paths: LabPaths, injection: Injection) -> None:
    """Append ``injection`` to the recorded state (a no-op when no state is recorded)."""
    state = load_state(paths)
    if state is None:
        log.warning("no lab state to record injection %s in", injection)
        return
    save_state(paths, replace(state, injections=(*state.injections, injection)))


@contextmanager
def locked(paths: LabPaths) -> Iterator[None]:
    """Hold the lab's lock: one ``up``/``down``/``inject`` changes the lab at a time."""
    paths.lab_dir.mkdir(parents=True, exist_ok=True)
    lock_file: Path = paths.lab_dir / ".lock"
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
