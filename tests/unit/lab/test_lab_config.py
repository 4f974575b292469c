"""Unit tests of the lab's pure parts: mirror lookup, image version, addresses, generated files,
state file handling and the fault registry. No host is booted here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import ConfigError, TargetError
from orchestrator.lab import faults, generated, image, prometheus
from orchestrator.lab.paths import LabPaths, lab_paths
from orchestrator.lab.probe import resolve_address, ssh_argv
from orchestrator.lab.state import HostRecord, Injection, LabState, load_state, save_state

SOURCES = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.fixture
def paths(tmp_path: Path) -> LabPaths:
    return LabPaths(repo=tmp_path, lab_dir=tmp_path / ".lab", cache_dir=tmp_path / "cache")


def test_mirror_is_the_uri_of_the_bookworm_stanza(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(SOURCES)
    assert image.mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_missing_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "other.sources").write_text("Types: deb\nURIs: http://x/y\nSuites: trixie\n")
    with pytest.raises(ConfigError, match="Suites: bookworm"):
        image.mirror(tmp_path)


def test_image_version_is_stable_and_marker_is_read(tmp_path: Path) -> None:
    assert image.image_version() == image.image_version()
    assert image.cached_version(tmp_path) is None
    (tmp_path / "etc").mkdir()
    (tmp_path / image.MARKER).write_text(json.dumps({"version": "abc"}))
    assert image.cached_version(tmp_path) == "abc"


def test_demo_unit_has_no_restart_policy() -> None:
    from orchestrator.lab.paths import FILES_DIR

    unit = (FILES_DIR / "selfheal-demo.service").read_text()
    assert "Restart=" not in unit
    assert "EnvironmentFile=/etc/default/selfheal-demo" in unit


def test_env_overrides_lab_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SELFHEAL_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("SELFHEAL_LAB_CACHE", str(tmp_path / "cache"))
    p = lab_paths()
    assert p.lab_dir == tmp_path / "lab"
    assert p.image_dir == tmp_path / "cache" / "rootfs"
    assert p.inventory == p.repo / "inventories" / "lab" / "hosts.yml"


@pytest.mark.parametrize(("host", "address"), [("vps1", "127.0.1.1"), ("127.0.1.7", "127.0.1.7")])
def test_resolve_address(host: str, address: str) -> None:
    assert resolve_address(host) == address


@pytest.mark.parametrize("host", ["vps0", "vps", "web1", "vps1; rm -rf /", "127.0.0.1", "vps999"])
def test_resolve_address_refuses_non_lab_hosts(host: str) -> None:
    with pytest.raises(TargetError):
        resolve_address(host)


def test_ssh_keeps_host_key_checking_on(paths: LabPaths) -> None:
    argv = ssh_argv(paths, "127.0.1.1", "true", 3)
    assert "StrictHostKeyChecking=yes" in argv
    assert "BatchMode=yes" in argv
    assert f"UserKnownHostsFile={paths.known_hosts}" in argv
    assert argv[-2:] == ["--", "true"]


def test_inventory_and_settings_round_trip(paths: LabPaths) -> None:
    generated.write_inventory(paths, {"vps1": "127.0.1.1", "vps2": "127.0.1.2"})
    inventory = yaml.safe_load(paths.inventory.read_text())
    vps2 = inventory["lab"]["hosts"]["vps2"]
    assert vps2["ansible_host"] == "127.0.1.2"
    assert vps2["selfheal_prometheus_host"] == "127.0.1.2"
    assert vps2["ansible_ssh_private_key_file"] == str(paths.client_key)
    assert "StrictHostKeyChecking=yes" in vps2["ansible_ssh_common_args"]
    assert generated.write_settings(paths)
    settings = paths.settings_file.read_text()
    assert settings.startswith(generated.HEADER + "\n")
    assert yaml.safe_load(settings)["inventory"]["path"] == str(paths.inventory)
    generated.remove(paths)
    assert not paths.inventory.exists()
    assert not paths.settings_file.exists()


def test_hand_written_settings_are_left_alone(paths: LabPaths) -> None:
    paths.settings_file.write_text("prometheus:\n  url: http://prod:9090\n")
    assert not generated.write_settings(paths)
    generated.remove(paths)
    assert paths.settings_file.read_text() == "prometheus:\n  url: http://prod:9090\n"


def test_state_round_trip_and_corrupt_file(paths: LabPaths) -> None:
    assert load_state(paths) is None
    state = LabState(
        image="/img",
        hosts=(HostRecord("vps1", "127.0.1.1", 42, "/log"),),
        prometheus_pid=7,
        injections=(Injection("service_crash", "vps1", 1.5),),
    )
    save_state(paths, state)
    assert load_state(paths) == state
    paths.state_file.write_text("{not json")
    assert load_state(paths) is None


def test_unknown_fault_lists_known_faults() -> None:
    with pytest.raises(TargetError, match="service_crash"):
        faults.inject("no_such_fault", "vps1")
    assert {"service_crash", "disk_full"} <= set(faults.FAULTS)


def test_lab_is_a_mixed_fleet_grouped_by_service(paths: LabPaths) -> None:
    hosts = {f"vps{i}": f"127.0.1.{i}" for i in range(1, 5)}
    generated.write_inventory(paths, hosts)
    children = yaml.safe_load(paths.inventory.read_text())["lab"]["children"]
    members = {group: set(body["hosts"]) for group, body in children.items()}
    assert members == {"web": {"vps1"}, "db": {"vps2"}, "app": {"vps1", "vps2", "vps3"},
                       "plain": {"vps4"}}
    prometheus.write_config(paths, hosts)
    wanted = prometheus.targets(paths)
    assert "node/127.0.1.4:9100" in wanted
    assert "demo/127.0.1.4:8080" not in wanted  # a plain host runs no demo app
    assert "demo/127.0.1.3:8080" in wanted
