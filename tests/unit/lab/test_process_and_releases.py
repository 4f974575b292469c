"""The lab's process-exporter (grouping, scrape job) and the demo app's releases and faults."""

from __future__ import annotations

import importlib.util
import re
import resource
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from orchestrator.errors import TargetError
from orchestrator.lab import demo_releases, faults, prometheus, services_process
from orchestrator.lab.paths import FILES_DIR, LabPaths


@pytest.fixture
def paths(tmp_path: Path) -> LabPaths:
    return LabPaths(repo=tmp_path, lab_dir=tmp_path / ".lab", cache_dir=tmp_path / "cache")


def group_name(cmdline: str, comm: str) -> str:
    """The group process-exporter gives a process under files/process-exporter.yml (first match;
    its Go regexps use only syntax Python's re reads the same way)."""
    config = yaml.safe_load((FILES_DIR / "process-exporter.yml").read_text())
    for matcher in config["process_names"]:
        if "comm" in matcher and comm not in matcher["comm"]:
            continue
        matches = [re.search(rx, cmdline) for rx in matcher["cmdline"]]
        if all(matches):
            groups = {k: v for m in matches if m for k, v in m.groupdict().items()}
            return str(matcher["name"]).replace("{{.Matches.script}}", groups.get("script", "")) \
                .replace("{{.Comm}}", comm)
    return ""


@pytest.mark.parametrize(("cmdline", "comm", "group"), [
    ("/usr/bin/python3 /opt/selfheal-demo/current/selfheal_demo.py", "python3",
     "selfheal_demo.py"),
    ("python3 -u /srv/jobs/report.py --daily", "python3", "report.py"),
    ("/usr/bin/python3", "python3", "python3"),  # Ansible's modules arrive on stdin
    ("sha256sum /dev/zero", "sha256sum", "sha256sum"),
    ("/usr/sbin/sshd -D", "sshd", "sshd"),
])
def test_processes_are_grouped_by_program_and_scripts_by_name(
        cmdline: str, comm: str, group: str) -> None:
    assert group_name(cmdline, comm) == group


def test_every_host_is_scraped_for_processes(paths: LabPaths) -> None:
    hosts = {f"vps{i}": f"127.0.1.{i}" for i in range(1, 5)}
    prometheus.write_config(paths, hosts)
    wanted = prometheus.targets(paths)
    assert {f"process/127.0.1.{i}:9256" for i in range(1, 5)} <= wanted  # plain hosts too
    ((text, target),) = services_process.host_files("127.0.1.7").values()
    assert "-web.listen-address=127.0.1.7:9256" in text
    assert target == services_process.DEFAULTS_PATH


def test_image_holds_releases_current_and_the_exporter_config(tmp_path: Path) -> None:
    demo_releases.customise(tmp_path)
    services_process.customise(tmp_path)
    app = tmp_path / "opt/selfheal-demo"
    assert str((app / "current").readlink()) == "/opt/selfheal-demo/releases/v1"
    assert sorted(p.name for p in (app / "releases").iterdir()) == ["v1"]
    assert "release=v1" in (app / "releases/v1/release.conf").read_text()
    builds = tmp_path / demo_releases.BUILDS_DIR.lstrip("/")
    assert "leak_mb_per_s=20" in (builds / "v2/release.conf").read_text()
    assert (tmp_path / demo_releases.DEPLOY.lstrip("/")).stat().st_mode & 0o111
    assert (tmp_path / services_process.CONFIG_PATH).read_text() == \
        (FILES_DIR / "process-exporter.yml").read_text()
    unit = (FILES_DIR / "selfheal-demo.service").read_text()
    assert "ExecStart=/usr/bin/python3 /opt/selfheal-demo/current/selfheal_demo.py" in unit


def _demo_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("selfheal_demo", FILES_DIR / "selfheal_demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_app_reads_its_release_and_burns_on_demand(tmp_path: Path) -> None:
    app = _demo_app()
    (tmp_path / "release.conf").write_text("# a comment\nrelease=v9\nleak_mb_per_s = 5\n")
    assert app.read_release(tmp_path) == {"release": "v9", "leak_mb_per_s": "5"}
    assert app.read_release(tmp_path / "missing") == {"release": "unknown"}
    burner = app.Burner()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    burner.start()
    deadline = time.monotonic() + 10  # a shared machine may give the thread little CPU
    while resource.getrusage(resource.RUSAGE_SELF).ru_utime - before < 0.3 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    burner.stop()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_utime - before >= 0.3
    (burn,) = [t for t in threading.enumerate() if t.name == "burn"]
    burn.join(5)
    assert not burn.is_alive()


def test_cpu_and_memory_faults_can_be_cleared() -> None:
    for name in ("cpu_runaway", "cpu_runaway_unit", "memory_leak"):
        assert faults.FAULTS[name].clear, name
    assert faults.FAULTS["memory_leak"].command == (demo_releases.DEPLOY, "v2")
    with pytest.raises(TargetError, match="cpu_runaway"):
        faults.clear("no_such_fault", "vps1")
