"""The inventory is read by Ansible's own parser; unsafe host names are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InventoryError, TargetError
from orchestrator.execute.inventory import load_inventory

INI = """
[web]
web1 ansible_host=10.0.0.11
web2 ansible_host=10.0.0.12 selfheal_prometheus_host=web2.internal

[db]
db1

[prod:children]
web
db
"""


def test_ini_inventory_with_groups_and_instance_mapping(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(INI)
    inv = load_inventory(path)
    assert set(inv.hosts) == {"web1", "web2", "db1"}
    assert inv.hosts["web1"].prometheus_host == "10.0.0.11"
    assert inv.hosts["web2"].prometheus_host == "web2.internal"
    assert inv.hosts["db1"].prometheus_host == "db1"
    assert set(inv.hosts["web1"].groups) == {"prod", "web"}
    assert inv.by_prometheus_host()["web2.internal"] == "web2"


def test_group_vars_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("selfheal_prometheus_host: shared.lb\n")
    (tmp_path / "hosts.yml").write_text("web:\n  hosts:\n    w1: {}\n")
    inv = load_inventory(tmp_path / "hosts.yml")
    assert inv.hosts["w1"].prometheus_host == "shared.lb"


def test_dynamic_inventory_script(tmp_path: Path) -> None:
    script = tmp_path / "inv.py"
    script.write_text("#!/usr/bin/env python3\nimport json\nprint(json.dumps({'app': "
                      "{'hosts': ['a1']}, '_meta': {'hostvars': {'a1': {'ansible_host': "
                      "'127.0.0.5'}}}}))\n")
    script.chmod(0o755)
    assert load_inventory(script).hosts["a1"].address == "127.0.0.5"


def test_host_with_metacharacters_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    good1: {}\n    bad1:\n"
                    "      ansible_host: \"{{ lookup('pipe', 'id') }}\"\n")
    inv = load_inventory(path)
    assert set(inv.hosts) == {"good1"}
    assert "bad1" in inv.refused[0]


def test_unknown_and_empty_targets(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(INI)
    inv = load_inventory(path)
    with pytest.raises(TargetError, match="unknown host"):
        inv.resolve(["web9"])
    with pytest.raises(TargetError, match="never treats an empty list as all"):
        inv.resolve([])


def test_unparsable_inventory_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all: [this is: not an inventory\n")
    with pytest.raises(InventoryError, match="could not read"):
        load_inventory(path)
    with pytest.raises(InventoryError, match="does not exist"):
        load_inventory(tmp_path / "nope.ini")


def test_example_inventory_maps_hosts_to_prometheus() -> None:
    from orchestrator.config import PROJECT_ROOT, load_settings

    inv = load_inventory(PROJECT_ROOT / "inventories" / "example" / "hosts.yml")
    assert inv.hosts["db-01.example.com"].prometheus_host == "10.20.0.31"
    assert inv.hosts["lb-01"].prometheus_host == "lb-01.example.com"
    assert inv.hosts["lb-01"].address == "203.0.113.10"
    assert inv.hosts["web-01.example.com"].prometheus_host == "web-01.example.com"
    assert inv.hosts["db-01.example.com"].groups == ("db",)
    settings = load_settings(PROJECT_ROOT / "inventories" / "example" / "selfheal.yml")
    assert settings.prometheus.max_staleness_s == 60


def test_hosts_sharing_a_prometheus_address_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("a ansible_host=10.0.0.5 ansible_port=2201\n"
                    "b ansible_host=10.0.0.5 ansible_port=2202\nc\n")
    inv = load_inventory(path)
    assert set(inv.hosts) == {"c"}
    assert "share the Prometheus address '10.0.0.5'" in inv.refused[0]


def test_host_pattern_characters_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text('all:\n  hosts:\n    good1: {}\n    "db*": {}\n    "web,1": {}\n')
    inv = load_inventory(path)
    assert set(inv.hosts) == {"good1"}
    assert len(inv.refused) == 2
    for message in inv.refused:
        assert "host pattern" in message and "rename the host" in message


def test_the_run_group_name_is_reserved(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[selfheal_targets]\nweb1\n")
    with pytest.raises(InventoryError, match="defines a group 'selfheal_targets'"):
        load_inventory(path)
