"""The lab fleet: real Debian hosts in systemd-nspawn on loopback, watched by a real Prometheus.

Used by ``selfheal lab`` (``orchestrator.cli.lab``), the e2e tests and the benchmarks. The public
surface is small:

    up(hosts=3, progress=None) -> LabState      boot vps1..vpsN + Prometheus, wait until they answer
    status() -> LabStatus                        check every host and Prometheus now
    down(progress=None) -> None                  stop everything, remove what the lab wrote
    lab_is_up() -> bool                          status().healthy
    inject(fault, host) -> Injection             inject a fault from ``FAULTS`` into one host
    clear(fault, host) -> None                   undo that fault on that host
    ssh_run(host, command) -> CompletedProcess   run a command as root on a host (pinned host key)
    lab_paths() -> LabPaths                      where the image, runtime state and files live

Modules, one job each: ``paths`` (where), ``image`` (build/cache the root), ``hostconfig``
(per-host files and keys), ``procs`` (background processes), ``probe`` (ssh/http checks),
``prometheus`` (controller-side Prometheus), ``generated`` (inventory and selfheal.yml),
``state`` (records and state.json), ``faults`` (fault injection and clearing), ``cgroups`` (one
cgroup tree per host), ``restarts`` (kill -9 + restart fidelity check), ``fleet``
(up/status/down), ``ca`` (the lab's certificate authority), ``services_web`` (nginx on the web
hosts) and ``services_blackbox`` (the controller-side blackbox exporter).
"""

from orchestrator.lab.faults import FAULTS, clear, inject
from orchestrator.lab.fleet import down, lab_is_up, status, up
from orchestrator.lab.paths import LabPaths, lab_paths
from orchestrator.lab.probe import ssh_run
from orchestrator.lab.state import HostStatus, Injection, LabState, LabStatus

__all__ = [
    "FAULTS",
    "HostStatus",
    "Injection",
    "LabPaths",
    "LabState",
    "LabStatus",
    "clear",
    "down",
    "inject",
    "lab_is_up",
    "lab_paths",
    "ssh_run",
    "status",
    "up",
]
