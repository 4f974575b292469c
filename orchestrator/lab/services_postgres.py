"""PostgreSQL 15 and prometheus-postgres-exporter on the lab's database hosts.

Called by ``image`` (``PACKAGES``, ``customise``), ``hostconfig`` (``host_files``),
``prometheus`` (``scrape_job``) and ``fleet`` (``checks``). Both services ship in the one shared
image and start only where ``/etc/selfheal-lab/db`` exists (a systemd drop-in
``ConditionPathExists=``). Per host: PostgreSQL listens on the host's own address with a small
``max_connections`` (so the ``db_pool_exhausted`` fault fills it in a moment), and the exporter
listens on ``<address>:9187`` and reads the server through the local socket as the role
``prometheus`` (member of ``pg_monitor``; peer authentication as the exporter's OS user).
``selfheal-lab-pg-setup.service`` creates that role and the application's role and database
``shop`` (OS user ``shop``, through sysusers.d) on every boot: each host boots a fresh overlay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.lab.layout import DB, MARKER_DIR, runs
from orchestrator.lab.probe import http_get

PACKAGES = ("postgresql-15", "prometheus-postgres-exporter")
PG_VERSION = "15"
PG_PORT = 5432
EXPORTER_PORT = 9187
MAX_CONNECTIONS = 20
SUPERUSER_RESERVED = 3
APP_USER = "shop"  # the lab's application: OS user, database role and database
CONF_D = f"etc/postgresql/{PG_VERSION}/main/conf.d"
EXPORTER_DEFAULTS = "etc/default/prometheus-postgres-exporter"
SETUP_UNIT = "selfheal-lab-pg-setup.service"
CONDITIONED_UNITS = ("postgresql.service", "postgresql@.service",
                     "prometheus-postgres-exporter.service", SETUP_UNIT)

_SETUP_SQL = f"""\
CREATE ROLE prometheus LOGIN;
GRANT pg_monitor TO prometheus;
CREATE ROLE {APP_USER} LOGIN;
CREATE DATABASE {APP_USER} OWNER {APP_USER};
"""

_SETUP_UNIT_TEXT = f"""\
# selfheal lab: the monitoring role and the application's role and database, on every boot
# (each lab host boots a fresh overlay of the image, so the cluster starts empty).
[Unit]
Description=selfheal lab PostgreSQL roles (prometheus, {APP_USER})
After=postgresql@{PG_VERSION}-main.service
Requires=postgresql@{PG_VERSION}-main.service
Before=prometheus-postgres-exporter.service

[Service]
Type=oneshot
RemainAfterExit=yes
User=postgres
ExecStartPre=+/usr/bin/systemd-sysusers /usr/lib/sysusers.d/selfheal-lab.conf
ExecStart=/usr/bin/psql -X -q -v ON_ERROR_STOP=1 -f /usr/local/share/selfheal-lab/pg-setup.sql

[Install]
WantedBy=multi-user.target
"""


def customise(root: Path) -> None:
    """Install the units' db-only drop-ins, the setup unit and the mount points of the
    per-host files into the image at ``root``."""
    for unit in CONDITIONED_UNITS:
        drop_in = root / "etc/systemd/system" / f"{unit}.d" / "selfheal-lab.conf"
        drop_in.parent.mkdir(parents=True, exist_ok=True)
        drop_in.write_text(f"[Unit]\nConditionPathExists={MARKER_DIR}/{DB}\n", encoding="utf-8")
    share = root / "usr/local/share/selfheal-lab"
    share.mkdir(parents=True, exist_ok=True)
    (share / "pg-setup.sql").write_text(_SETUP_SQL, encoding="utf-8")
    (root / "etc/systemd/system" / SETUP_UNIT).write_text(_SETUP_UNIT_TEXT, encoding="utf-8")
    wants = root / "etc/systemd/system/multi-user.target.wants" / SETUP_UNIT
    wants.parent.mkdir(parents=True, exist_ok=True)
    wants.unlink(missing_ok=True)
    wants.symlink_to(f"/etc/systemd/system/{SETUP_UNIT}")
    sysusers = root / "usr/lib/sysusers.d/selfheal-lab.conf"
    sysusers.parent.mkdir(parents=True, exist_ok=True)
    sysusers.write_text(f'u {APP_USER} - "selfheal lab application" /nonexistent\n',
                        encoding="utf-8")
    for point in (f"{CONF_D}/selfheal-lab.conf", EXPORTER_DEFAULTS):  # bind mount points
        (root / point).parent.mkdir(parents=True, exist_ok=True)
        (root / point).touch()


def host_files(address: str) -> dict[str, tuple[str, str]]:
    """File name -> (text, path inside the host) of one host's PostgreSQL files."""
    server = (
        "# Written by selfheal lab: this host's own address, a pool small enough to fill.\n"
        f"listen_addresses = '{address}'\n"
        f"port = {PG_PORT}\n"
        f"max_connections = {MAX_CONNECTIONS}\n"
        f"superuser_reserved_connections = {SUPERUSER_RESERVED}\n"
    )
    exporter = (
        "# Written by selfheal lab: the local socket as role prometheus (pg_monitor), and\n"
        "# this host's own address for /metrics.\n"
        "DATA_SOURCE_NAME='user=prometheus host=/run/postgresql dbname=postgres "
        "sslmode=disable'\n"
        f'ARGS="--web.listen-address={address}:{EXPORTER_PORT}"\n'
    )
    return {
        "postgresql-lab.conf": (server, f"/{CONF_D}/selfheal-lab.conf"),
        "prometheus-postgres-exporter": (exporter, f"/{EXPORTER_DEFAULTS}"),
    }


def scrape_job(addresses: Mapping[str, str]) -> dict[str, Any]:
    """The ``postgres`` scrape job: the exporter of every db host (name -> address)."""
    return {
        "job_name": "postgres",
        "static_configs": [
            {"targets": [f"{a}:{EXPORTER_PORT}" for n, a in addresses.items() if runs(n, DB)]},
        ],
    }


def exporter_reads_server(address: str) -> bool:
    """True when the exporter answers and reaches PostgreSQL (``pg_up 1``)."""
    try:
        body = http_get(f"http://{address}:{EXPORTER_PORT}/metrics")
    except OSError:
        return False
    return b"\npg_up 1" in body


def checks(name: str, address: str) -> dict[str, bool]:
    """The lab's health checks for ``name``'s PostgreSQL (none on a host without the db role)."""
    return {"postgres": exporter_reads_server(address)} if runs(name, DB) else {}
