"""Memory leaks on the lab, end to end: a deploy of the leaky release v2 rolled back to v1 (and
that rollback undone), a restart giving the memory back, and a rollback that fails midway or
cannot start being undone from its snapshot.

release_rollback is risk tier 2, which strict mode sends for approval: the first test lets the
loop heal a leak after a deploy on its own in ``relaxed`` mode (memory_leak_after_deploy
supersedes the plain memory_leak, so there is one incident and one fix); the others run roles by
hand with --force and a reason, as an approver would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import lab
from orchestrator.drill import run_drill
from orchestrator.engine import Controller
from orchestrator.lab import demo_releases, prometheus
from orchestrator.lab.paths import host_address
from orchestrator.manual import ManualRequest, ManualResult, run_by_hand
from orchestrator.wiring import controller_for
from tests.e2e.test_heal import settings_with_state, started_at
from tests.e2e.test_tls import settings_for

pytestmark = pytest.mark.e2e
THRESHOLD = 128 * 2**20  # service_memory_high in rules/faults.yml
APP = demo_releases.APP_DIR


def demo_instance(host: str) -> str:
    return f"{host_address(int(host.removeprefix('vps')))}:8080"


def rss(host: str, promql: str = "process_resident_memory_bytes{{instance=\"{i}\"}}") -> float:
    rows = prometheus.query(promql.format(i=demo_instance(host)))
    return float(rows[0]["value"][1]) if rows else float("nan")


def release_served(host: str) -> str:
    rows = prometheus.query(f'selfheal_demo_build_info{{instance="{demo_instance(host)}"}}')
    return rows[0]["metric"]["release"] if rows else ""


def current(host: str) -> str:
    return lab.ssh_run(host, ["readlink", f"{APP}/current"]).stdout.strip()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def deploy_leak(host: str) -> None:
    lab.inject("memory_leak", host)
    wait_until(lambda: rss(host) > THRESHOLD, f"the leak on {host} to pass 128 MiB")


def rollback_by_hand(controller: Controller, host: str, **params: str) -> ManualResult:
    return run_by_hand(controller, ManualRequest(
        host, "release_rollback", params, False, "e2e", force=True,
        reason="risk tier 2 needs approval in strict mode; the test stands in for the approver"))


def typed(host: str) -> dict[str, str]:
    """The parameters typed out, as by hand when no firing series carries them."""
    return {"release_rollback_unit": "selfheal-demo.service",
            "release_rollback_health_url": f"http://{demo_instance(host)}/healthz"}


def test_the_loop_rolls_a_leaky_deploy_back_in_relaxed_mode(
        lab_fleet: None, tmp_path: Path) -> None:
    controller = controller_for(settings_for(tmp_path))
    others = {h: started_at(h) for h in ("vps1", "vps2")}

    def leak(fault: str, host: str) -> float:
        return lab.inject(fault, host).injected_at

    try:
        result = run_drill(controller, "memory_leak", "vps3", leak, timeout_s=180)
        assert result.healed, result
        assert (result.fault, result.remediation) == ("memory_leak_after_deploy",
                                                      "release_rollback")
        assert current("vps3") == f"{APP}/releases/v1"
        # one incident: the plain leak was superseded, not healed a second way
        assert [(i.fault, i.state.value) for i in controller.store.incidents()
                if i.host == "vps3"] == [("memory_leak_after_deploy", "resolved")]
        assert {h: started_at(h) for h in others} == others, "another host was restarted"
    finally:
        lab.clear("memory_leak", "vps3")


def test_a_leak_after_a_deploy_is_rolled_back_and_that_can_be_undone(
        lab_fleet: None, tmp_path: Path) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    others = {h: started_at(h) for h in ("vps1", "vps2")}
    try:
        deploy_leak("vps3")
        faults = {d.fault for v in controller.look()[0] if v.host == "vps3" for d in v.diagnoses}
        # the leak began with a deploy: the specific fault supersedes the plain leak
        assert faults == {"memory_leak_after_deploy"}, faults
        done = rollback_by_hand(controller, "vps3")
        assert done.outcome is not None and done.outcome.status.value == "succeeded", done.outcome
        assert current("vps3") == f"{APP}/releases/v1"
        wait_until(lambda: release_served("vps3") == "v1", "v1 to be served")
        after = ('process_resident_memory_bytes{{instance="{i}"}} * on (instance, unit) '
                 '(count by (instance, unit) (count_over_time(selfheal_demo_build_info[24h]))'
                 ' > bool 1)')
        wait_until(lambda: rss("vps3", after) < THRESHOLD, "the after-deploy signal to recover",
                   timeout=30)
        assert {h: started_at(h) for h in others} == others, "another host was restarted"
        assert {run.host for run in controller.store.history(0)} == {"vps3"}
        # idempotent: already on v1, no change
        again = rollback_by_hand(controller, "vps3", **typed("vps3"))
        assert again.outcome is not None and again.outcome.status.value == "succeeded"
        assert again.outcome.changed_hosts == () and current("vps3") == f"{APP}/releases/v1"
        # the rollback of the rollback: back to v2, restarted and healthy
        undo = controller.run_play(done.plan, "rollback")
        assert undo.status.value == "succeeded", undo
        assert current("vps3") == f"{APP}/releases/v2"
        wait_until(lambda: release_served("vps3") == "v2", "v2 to be served again")
    finally:
        lab.clear("memory_leak", "vps3")


def test_a_restart_gives_the_memory_back(lab_fleet: None, tmp_path: Path) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    others = {h: started_at(h) for h in ("vps1", "vps3")}
    try:
        deploy_leak("vps2")
        before = started_at("vps2")
        began = time.time()
        done = run_by_hand(controller, ManualRequest("vps2", "service_restart_memory", {}, False,
                                                     "e2e"))
        assert done.outcome is not None and done.outcome.status.value == "succeeded", done.outcome
        assert started_at("vps2") != before
        # v2 leaks again at once (20 MB/s): the memory came down after the restart, for a while
        window = max(5, int(time.time() - began) + 2)
        lowest = ('min_over_time(process_resident_memory_bytes{{instance="{i}"}}['
                  + str(window) + "s])")
        wait_until(lambda: rss("vps2", lowest) < THRESHOLD / 2, "a low sample after the restart",
                   timeout=20)
        assert {h: started_at(h) for h in others} == others
    finally:
        lab.clear("memory_leak", "vps2")


def test_a_rollback_that_fails_midway_or_cannot_start_changes_nothing_in_the_end(
        lab_fleet: None, tmp_path: Path) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    v1 = f"{APP}/releases/v1/selfheal_demo.py"
    # nothing before v1: the role refuses before any change, and the rollback does nothing
    refused = rollback_by_hand(controller, "vps1", **typed("vps1"))
    assert refused.outcome is not None and refused.outcome.status.value == "failed"
    assert "nothing to roll back to" in " ".join(refused.outcome.messages)
    assert current("vps1") == f"{APP}/releases/v1"
    try:
        deploy_leak("vps1")
        # v1 broken on disk: the rollback switches to it, the unit cannot start, health fails
        assert lab.ssh_run("vps1", ["mv", v1, f"{v1}.broken"]).returncode == 0
        failed = rollback_by_hand(controller, "vps1")
        assert failed.outcome is not None and failed.outcome.status.value == "failed"
        assert current("vps1") == f"{APP}/releases/v1"  # it did get that far
        undo = controller.run_play(failed.plan, "rollback")
        assert undo.status.value == "succeeded", undo
        assert current("vps1") == f"{APP}/releases/v2"
        wait_until(lambda: release_served("vps1") == "v2", "v2 to be served again")
    finally:
        lab.ssh_run("vps1", ["sh", "-c", f"test -e {v1}.broken && mv {v1}.broken {v1}; true"])
        lab.clear("memory_leak", "vps1")
