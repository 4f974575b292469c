"""Which services each lab host runs: the lab is a small mixed fleet, not identical hosts.

Called by ``fleet.up`` (per-host files, health checks), ``generated.write_inventory`` (one
Ansible group per service role) and ``prometheus.write_config`` (who is scraped for what).
Host ``vpsN`` takes the roles of ``LAYOUT[(N - 1) % len(LAYOUT)]``: vps1 a web host (nginx and
the demo app), vps2 a database host (PostgreSQL and the demo app), vps3 an app host, vps4 a plain
host with only the base exporters. Inside a host, each role is an empty marker file
``/etc/selfheal-lab/<role>`` that the role's units carry as ``ConditionPathExists=``, so one
shared image serves every kind of host.
"""

from __future__ import annotations

from orchestrator.lab.paths import HOST_PREFIX

APP = "app"
WEB = "web"
DB = "db"
PLAIN = "plain"
GROUPS = (APP, WEB, DB, PLAIN)
LAYOUT: tuple[tuple[str, ...], ...] = ((WEB, APP), (DB, APP), (APP,), (PLAIN,))
MARKER_DIR = "/etc/selfheal-lab"


def host_groups(name: str) -> tuple[str, ...]:
    """The service roles of lab host ``name`` (``vpsN``)."""
    index = int(name.removeprefix(HOST_PREFIX))
    return LAYOUT[(index - 1) % len(LAYOUT)]


def runs(name: str, group: str) -> bool:
    """Whether lab host ``name`` runs the services of ``group``."""
    return group in host_groups(name)
