"""End to end on the lab: a data disk filled by logs and archives, healed by disk_cleanup.

Each test fills one host's 64 MB /srv (``selfheal lab inject disk_full``), lets bounded sweeps
heal it (detect, ``disk_cleanup``, verify on a fresh Prometheus sample) and checks that the
other hosts were not touched. The symlink test plants links to /etc and to /etc/passwd inside
/srv/log: they and their targets must come out untouched. The live-log test fills the disk with
the log being written, which the cleanup must not delete: verification fails, the rollback
decompresses what was compressed (byte for byte) and the incident ends rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import lab
from orchestrator.config import Settings, load_settings
from orchestrator.drill import run_drill
from orchestrator.engine import Controller
from orchestrator.wiring import controller_for

pytestmark = pytest.mark.e2e
HOST = "vps3"
DEMO = "selfheal-demo.service"
BAIT = "/etc/selfheal-e2e"
# what a cleanup that followed /srv/log/etc -> /etc or passwd.log.9 -> /etc/passwd would change
ETC_STATE = f"sha256sum /etc/passwd {BAIT}/*; stat -c '%n %s %Y' /etc/passwd {BAIT}/*"


def controller(tmp_path: Path) -> Controller:
    base = load_settings(lab.lab_paths().settings_file)
    data = base.model_dump(exclude={"source_file"})
    data["state"] = {"dir": tmp_path / "state"}
    return controller_for(Settings(**data))


def sh(host: str, command: str) -> str:
    result = lab.ssh_run(host, command, timeout=30)
    assert result.returncode == 0, f"{host}: {command}: {result.stderr}"
    return result.stdout


def inject(fault: str, host: str) -> float:
    return lab.inject(fault, host).injected_at


@pytest.fixture
def cleared(lab_fleet: None) -> Iterator[None]:
    yield
    lab.clear("disk_full", HOST)
    sh(HOST, f"rm -rf /var/lib/selfheal/snapshots/disk_cleanup {BAIT}")


def others_state(names: list[str]) -> dict[str, str]:
    """What a cleanup on another host would change there: its /srv and its demo unit."""
    return {h: sh(h, f"find /srv -printf '%p %s %T@\\n' | sort; "
                     f"systemctl show -p ExecMainStartTimestampMonotonic {DEMO}")
            for h in names}


def test_full_disk_is_cleaned_never_through_a_symlink_and_others_untouched(
        cleared: None, tmp_path: Path) -> None:
    ctl = controller(tmp_path)
    others = [h for h in ctl.inventory.hosts if h != HOST]
    before = others_state(others)
    # bait: what the cleanup would delete or compress if it ever followed a link to /etc
    sh(HOST, f"mkdir -p {BAIT} && head -c 100000 /dev/urandom > {BAIT}/app.log.9 && "
             f"cp {BAIT}/app.log.9 {BAIT}/app.log.1 && cp {BAIT}/app.log.9 {BAIT}/old.tar.gz && "
             f"touch -d '60 days ago' {BAIT}/app.log.9 {BAIT}/old.tar.gz && "
             f"touch -d '2 days ago' {BAIT}/app.log.1")
    etc_before = sh(HOST, ETC_STATE)

    def fill_and_plant_links(fault: str, host: str) -> float:
        at = inject(fault, host)
        sh(host, "ln -s /etc /srv/log/etc && ln -s /etc/passwd /srv/log/shop/passwd.log.9 && "
                 "touch -h -d '60 days ago' /srv/log/etc /srv/log/shop/passwd.log.9")
        return at

    result = run_drill(ctl, "disk_full", HOST, fill_and_plant_links, timeout_s=180)
    assert result.healed, result
    assert result.remediation == "disk_cleanup"
    address = ctl.inventory.hosts[HOST].prometheus_host
    free = lab.prometheus.query(f'node_filesystem_avail_bytes{{mountpoint="/srv",'
                                f'instance="{address}:9100"}}')
    assert free and float(free[0]["value"][1]) > 0.5 * 64 * 2**20, free
    listing = sh(HOST, "cd /srv && find . -printf '%p %y\\n' | sort")
    assert "./archive/shop-db-week01.tar.gz" not in listing  # weeks old: deleted
    assert "./log/shop/shop.log.9 f" not in listing           # 9 days old: deleted
    assert "./log/shop/shop.log.1.gz f" in listing            # a day old: compressed
    assert "./log/shop/shop.log f" in listing                 # the log being written: kept
    assert "./log/billing/billing.log f" in listing
    # the symlinks stay, and what they point to is untouched
    assert "./log/etc l" in listing and "./log/shop/passwd.log.9 l" in listing
    assert sh(HOST, ETC_STATE) == etc_before
    assert others_state(others) == before, "a cleanup touched another host"
    assert {run.host for run in ctl.store.history(0)} == {HOST}


def test_a_disk_the_cleanup_cannot_free_is_rolled_back_and_escalated(
        cleared: None, tmp_path: Path) -> None:
    ctl = controller(tmp_path)
    rotated = "/srv/log/shop/shop.log.1 /srv/log/shop/shop.log.2 /srv/log/billing/billing.log.1"

    def fill_with_the_live_log(fault: str, host: str) -> float:
        return inject("disk_full_live_log", host)

    result = run_drill(ctl, "disk_full", HOST, fill_with_the_live_log, timeout_s=180)
    assert result.state == "rolled_back", result
    transitions = ctl.store.transitions(result.incident_id or 0)
    assert [t["to"] for t in transitions][-2:] == ["verifying", "rolled_back"]
    assert "rollback succeeded; escalated" in transitions[-1]["note"], transitions[-1]
    # the rotated logs the cleanup compressed are back, byte for byte, with their dates
    manifest = json.loads(sh(HOST, "cat /var/lib/selfheal/snapshots/disk_cleanup/"
                                   "manifest.json"))
    recorded = {item["path"]: (item["checksum"], int(item["mtime"]))
                for item in manifest["compress"]}
    assert set(rotated.split()) <= set(recorded)
    sums = dict(reversed(line.split()) for line in sh(HOST, f"sha256sum {rotated}").splitlines())
    dates = dict(line.split() for line in sh(HOST, f"stat -c '%n %Y' {rotated}").splitlines())
    assert {p: (sums[p], int(dates[p])) for p in rotated.split()} == {
        p: recorded[p] for p in rotated.split()}
    assert "shop.log.1.gz" not in sh(HOST, "ls /srv/log/shop")
    # never the log being written, which is what fills the disk
    assert int(sh(HOST, "stat -c %s /srv/log/shop/shop.log")) > 40 * 2**20
