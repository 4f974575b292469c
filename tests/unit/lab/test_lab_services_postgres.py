"""Unit tests of the lab's PostgreSQL pieces and of the fault registry's db and disk faults: the
files a db host gets, the units kept off other hosts, the scrape job, and the fault commands.
No host is booted here (tests/e2e/test_db_pool.py and test_disk.py boot them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.errors import TargetError
from orchestrator.lab import faults, generated, prometheus, services_postgres
from orchestrator.lab.paths import LabPaths
from orchestrator.lab.state import HostRecord, LabState, save_state


@pytest.fixture
def paths(tmp_path: Path) -> LabPaths:
    return LabPaths(repo=tmp_path, lab_dir=tmp_path / ".lab", cache_dir=tmp_path / "cache")


def test_each_db_host_listens_on_its_own_address_with_a_small_pool() -> None:
    files = services_postgres.host_files("127.0.9.2")
    server, target = files["postgresql-lab.conf"]
    assert target == "/etc/postgresql/15/main/conf.d/selfheal-lab.conf"
    assert "listen_addresses = '127.0.9.2'" in server
    assert f"max_connections = {services_postgres.MAX_CONNECTIONS}" in server
    exporter, target = files["prometheus-postgres-exporter"]
    assert target == "/etc/default/prometheus-postgres-exporter"
    assert 'ARGS="--web.listen-address=127.0.9.2:9187"' in exporter
    assert "user=prometheus host=/run/postgresql" in exporter  # the socket, not a password


def test_postgres_units_start_only_on_db_hosts(tmp_path: Path) -> None:
    services_postgres.customise(tmp_path)
    for unit in ("postgresql@.service", "prometheus-postgres-exporter.service",
                 services_postgres.SETUP_UNIT):
        drop_in = tmp_path / "etc/systemd/system" / f"{unit}.d" / "selfheal-lab.conf"
        assert drop_in.read_text() == "[Unit]\nConditionPathExists=/etc/selfheal-lab/db\n"
    sql = (tmp_path / "usr/local/share/selfheal-lab/pg-setup.sql").read_text()
    assert "GRANT pg_monitor TO prometheus" in sql
    assert "SUPERUSER" not in sql.upper()  # neither the app nor the monitoring role
    # the per-host files are bound onto files that must exist in the image
    for _, target in services_postgres.host_files("127.0.9.2").values():
        assert (tmp_path / target.lstrip("/")).is_file()


def test_only_db_hosts_are_scraped_for_postgres(paths: LabPaths) -> None:
    hosts = {f"vps{i}": f"127.0.9.{i}" for i in range(1, 7)}
    prometheus.write_config(paths, hosts)
    postgres = {t for t in prometheus.targets(paths) if t.startswith("postgres/")}
    assert postgres == {"postgres/127.0.9.2:9187", "postgres/127.0.9.6:9187"}


def test_lab_inventory_becomes_other_users_with_su(paths: LabPaths) -> None:
    generated.write_inventory(paths, {"vps2": "127.0.9.2"})
    host = yaml.safe_load(paths.inventory.read_text())["lab"]["hosts"]["vps2"]
    assert host["ansible_become_method"] == "su"


def test_every_fault_can_be_cleared_and_outlives_ssh_where_it_holds_something() -> None:
    for name, fault in faults.FAULTS.items():
        assert fault.clear, f"{name} has no clear command"
    for name in ("disk_full", "disk_full_live_log", "db_pool_exhausted"):
        command = faults.FAULTS[name].command
        assert command[0] == "systemd-run" and "--property=Type=notify" in command, name
    assert "--uid=shop" in faults.FAULTS["db_pool_exhausted"].command  # the app, not root
    assert faults.FAULTS["disk_full_live_log"].command[-1] == "--live"


def test_a_db_fault_on_a_host_without_postgres_names_the_hosts_that_have_it(
        paths: LabPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_LAB_DIR", str(paths.lab_dir))
    hosts = tuple(HostRecord(f"vps{i}", f"127.0.9.{i}", None, "") for i in range(1, 5))
    save_state(paths, LabState(image="", hosts=hosts))
    with pytest.raises(TargetError, match=r"group 'db' and vps4 is not one.*: vps2$"):
        faults.clear("db_pool_exhausted", "vps4")
    with pytest.raises(TargetError, match="lab hosts: vps1, vps2, vps3, vps4"):
        faults.inject("disk_full", "vps9")
