"""The tls_renew role and its rules, read as data: its options agree across entry points,
defaults and the catalog; its tasks use no shell; the catalog refuses a URL label that could
smuggle anything into Ansible; the signal fires inside the same window the role renews for."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.core.plan import resolve_param
from orchestrator.errors import UnsafeValueError
from orchestrator.rules import Rules
from tests.conftest import ROLES_DIR

ROLE = ROLES_DIR / "tls_renew"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def task_files() -> list[Path]:
    return sorted((ROLE / "tasks").glob("*.yml"))


def test_entry_points_share_options_and_defaults_match() -> None:
    specs = load(ROLE / "meta/argument_specs.yml")["argument_specs"]
    assert set(specs) == {"main", "verify", "rollback"}
    options = specs["main"]["options"]
    assert all(specs[e]["options"] == options for e in specs)
    assert all(name.startswith("tls_renew_") for name in options)
    defaults = load(ROLE / "defaults/main.yml")
    assert set(defaults) == {n for n, o in options.items() if not o.get("required")}
    assert all(options[n]["default"] == v for n, v in defaults.items())
    assert options["tls_renew_issuer"]["choices"] == ["local_ca", "certbot"]


def test_every_variable_the_tasks_use_is_defined() -> None:
    options = set(load(ROLE / "meta/argument_specs.yml")["argument_specs"]["main"]["options"])
    defined = options | set(load(ROLE / "vars/main.yml"))
    text = "\n".join(p.read_text() for p in [*task_files(), ROLE / "vars/main.yml"])
    defined |= set(re.findall(r"register: (tls_renew_\w+)", text))
    defined |= set(re.findall(r"^\s+(tls_renew_\w+):", text, re.MULTILINE))  # set_fact, vars
    used = set(re.findall(r"\btls_renew_\w+", text))
    assert used <= defined, sorted(used - defined)


def test_tasks_run_no_shell_and_commands_are_argument_lists() -> None:
    for path in task_files():
        for task in load(path) or []:
            for key in ("block", None):
                for item in task.get(key, []) if key else [task]:
                    modules = set(item) & {"ansible.builtin.shell", "shell", "raw",
                                           "ansible.builtin.raw", "command"}
                    assert not modules, (path.name, item.get("name"))
                    if "ansible.builtin.command" in item:
                        assert set(item["ansible.builtin.command"]) <= {
                            "argv", "stdin", "removes", "creates", "chdir"
                        }, (path.name, item["name"])


def test_catalog_entry(rules: Rules) -> None:
    entry = rules.catalog.remediations["tls_renew"]
    assert (entry.role, entry.risk_tier, entry.rollback) == ("tls_renew", 2, "role")
    assert set(entry.params) == {"tls_renew_url"}
    assert entry.verify.signal == "tls_cert_expiry"
    assert rules.faults.faults["tls_expiry"].remediations == ("tls_renew",)


def test_signal_fires_inside_the_window_the_role_renews_for(rules: Rules) -> None:
    signal = rules.faults.signals["tls_cert_expiry"]
    window = load(ROLE / "defaults/main.yml")["tls_renew_window_s"]
    assert signal.fires(window - 1) and signal.fires(-86400.0)  # expiring, and expired
    assert not signal.fires(window + 1)


@pytest.mark.parametrize("url", ["https://127.0.1.1:443", "https://web-01.example.com",
                                 "https://web-01.example.com:8443/"])
def test_url_from_the_target_label(rules: Rules, url: str) -> None:
    spec = rules.catalog.remediations["tls_renew"].params["tls_renew_url"]
    assert resolve_param("tls_renew_url", spec, {"target": url}) == url


@pytest.mark.parametrize("url", [
    "http://127.0.1.1:443", "https://127.0.1.1:443/path", "https://a b:443",
    "https://{{ lookup('pipe', 'id') }}", "https://x:443\n", "https://$(id):443",
    "https://x:443;reboot",
])
def test_url_label_that_could_smuggle_is_refused(rules: Rules, url: str) -> None:
    spec = rules.catalog.remediations["tls_renew"].params["tls_renew_url"]
    with pytest.raises(UnsafeValueError, match="refused parameter 'tls_renew_url'"):
        resolve_param("tls_renew_url", spec, {"target": url})
