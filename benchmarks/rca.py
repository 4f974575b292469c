"""Root-cause analysis accuracy and cost: rules alone, and rules plus recorded model answers.

    .venv/bin/python benchmarks/rca.py            # the case folders of tests/fixtures/rca
    .venv/bin/python benchmarks/rca.py --lab      # plus every lab fault, and each host healthy

Prints, per path, the accuracy of the fault class and of the chosen remediation (the report's
structured fields against each case's expected ones) and the time the stage adds (context
gathering and the model call). The model path goes through the real litellm client to a local
OpenAI-compatible server replaying the recorded answers (tests/rca_replay.py). In ``--lab`` mode
each lab fault (``selfheal lab inject``) is injected on a host of the group it needs, the rules'
verdict awaited, the stage run for real (Prometheus timeline, the diagnose role over SSH, the
store), and the fault cleared (``lab clear``) and the host awaited healthy; the recorded answer
of the case folder ``LAB_EXPECTED`` names is replayed for the model path, its fixture addresses
turned into the lab's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.core.diagnose import HostVerdict  # noqa: E402
from orchestrator.models import Diagnosis  # noqa: E402
from orchestrator.rca.context import Context  # noqa: E402
from orchestrator.rca.report import Report  # noqa: E402
from orchestrator.rca.stage import RcaStage  # noqa: E402
from tests.rca_replay import (  # noqa: E402
    CASES,
    KEY,
    KEY_ENV,
    ReplayServer,
    Reply,
    cases,
    load_case,
    project_rules,
    replay_server,
    stage,
)

# lab fault -> (case folder whose recorded answer is replayed, expected fault, remediation):
# every fault `selfheal lab inject` knows, with what faults.yml and the catalog should make of it
LAB_EXPECTED = {
    "service_crash": ("service_crash_agree", "service_crash", "service_restart"),
    "disk_full": ("disk_full_agree", "disk_full", "disk_cleanup"),
    "disk_full_live_log": ("disk_full_agree", "disk_full", "disk_cleanup"),
    "db_pool_exhausted": ("db_pool_exhausted_agree", "db_pool_exhausted", "db_terminate_idle"),
    "tls_expiry": ("tls_expiry_agree", "tls_expiry", "tls_renew"),
    "tls_expired": ("tls_expiry_agree", "tls_expiry", "tls_renew"),
    "cpu_runaway": ("cpu_runaway_agree", "cpu_runaway", "runaway_process"),
    "cpu_runaway_unit": ("cpu_runaway_agree", "cpu_runaway", "runaway_process"),
    # the lab's leak comes with a release deploy: the more specific fault wins
    "memory_leak": ("memory_leak_after_deploy_agree", "memory_leak_after_deploy",
                    "release_rollback"),
}
FIXTURE_NET = "127.0.14."  # the case folders' addresses; a replayed answer names the lab's


@dataclass
class Row:
    case: str
    path: str
    fault_ok: bool
    fix_ok: bool
    seconds: float
    llm: str
    parts: str = ""  # where the time went (lab: timeline, facts, similar incidents)
    subject: str = ""  # the incident's unit, mount point or target, as the report names it
    approval: bool = False  # the model path turned the incident into an approval
    got: str = ""  # what the report said: fault/remediation


def score(name: str, path: str, report: Report, expected: Mapping[str, object],
          seconds: float) -> Row:
    return Row(name, path, report.fault == expected["fault"],
               report.remediation == expected["remediation"], seconds, report.llm_status.value,
               subject=report.subject, approval=report.needs_approval,
               got=f"{report.fault}/{report.remediation}")


def run_case(rca: RcaStage, verdict: HostVerdict, diagnosis: Diagnosis | None,
             context: Context) -> tuple[Report, float]:
    started = time.monotonic()
    report = rca.explain(verdict, diagnosis, context).report
    return report, time.monotonic() - started


def import_seconds() -> float:
    """Importing litellm once (the first model call of a process pays it; the rows do not)."""
    from orchestrator.rca.llm import litellm_completion

    started = time.monotonic()
    litellm_completion()
    return time.monotonic() - started


def fixture_rows() -> list[Row]:
    rules = project_rules()
    rows: list[Row] = []
    with replay_server() as server:
        for folder in cases():
            case = load_case(folder)
            report, took = run_case(stage(rules), case.verdict, case.diagnosis, case.context)
            rows.append(score(case.name, "rules", report, case.expected, took))
            server.replies.append(Reply(case.answer))
            report, took = run_case(stage(rules, server.settings()), case.verdict,
                                    case.diagnosis, case.context)
            rows.append(score(case.name, "rules+llm", report, case.expected, took))
    return rows


def lab_rows() -> list[Row]:
    from orchestrator.config import load_settings
    from orchestrator.lab import faults as lab_faults, layout
    from orchestrator.lab.paths import ADDRESS_PREFIX
    from orchestrator.wiring import controller_for, rca_for

    settings = load_settings(None)
    controller = controller_for(settings)
    rules = controller.rules
    hosts = sorted(controller.inventory.hosts)
    rows: list[Row] = []
    missing = sorted(set(lab_faults.FAULTS) - set(LAB_EXPECTED))
    if missing:
        raise SystemExit(f"benchmarks/rca.py: no expected diagnosis for lab faults {missing}; "
                         "add them to LAB_EXPECTED")
    with replay_server() as server:
        llm = server.settings(timeout_s=20)
        plain = rca_for(settings, rules, controller.inventory, controller.executor,
                        controller.store)
        with_llm = RcaStage(**{**plain.__dict__, "llm": llm})
        scenarios: list[tuple[str, str]] = []
        for i, fault in enumerate(sorted(lab_faults.FAULTS)):
            group = lab_faults.FAULTS[fault].group
            fits = [h for h in hosts if group is None or layout.runs(h, group)]
            scenarios.append((fault, fits[i % len(fits)]))
        scenarios += [("benign", h) for h in hosts]
        for fault, host in scenarios:
            if fault != "benign":
                lab_faults.inject(fault, host)
            try:
                verdict = _await(controller, host, fault != "benign")
                rows += _lab_case(plain, with_llm, server, fault, host, verdict,
                                  ADDRESS_PREFIX)
            finally:
                if fault != "benign":
                    lab_faults.clear(fault, host)
                    _await_healthy(controller, host)
    return rows


def _lab_case(plain: RcaStage, with_llm: RcaStage, server: ReplayServer, fault: str,
              host: str, verdict: HostVerdict, address_prefix: str) -> list[Row]:
    """Both paths on one lab scenario, on the same gathered context."""
    folder, want_fault, want_fix = LAB_EXPECTED.get(fault, ("benign_healthy", None, None))
    expected = {"fault": want_fault, "remediation": want_fix}
    diagnosis = verdict.diagnoses[0] if verdict.diagnoses else None
    started = time.monotonic()
    context = plain.gather(verdict, diagnosis)
    gathered = time.monotonic() - started
    name = f"lab:{fault}@{host}"
    report, took = run_case(plain, verdict, diagnosis, context)
    parts = " ".join(f"{k}={v:.1f}" for k, v in context.timings.items())
    rules_row = replace(score(name, "rules", report, expected, gathered + took), parts=parts)
    answer = (CASES / folder / "answer.txt").read_text().replace(FIXTURE_NET, address_prefix)
    server.replies.append(Reply(answer))
    report, took = run_case(with_llm, verdict, diagnosis, context)
    llm_row = replace(score(name, "rules+llm", report, expected, gathered + took),
                      parts=f"{parts} llm={took:.2f}")
    return [rules_row, llm_row]


def _await(controller: object, host: str, faulty: bool, timeout_s: float = 90.0) -> HostVerdict:
    """The host's verdict once the rules diagnose a fault (else the last one seen); a healthy
    host's first verdict."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdicts, _, _ = controller.look()  # type: ignore[attr-defined]
        verdict: HostVerdict = next(v for v in verdicts if v.host == host)
        if not faulty or verdict.diagnoses or time.monotonic() > deadline:
            return verdict
        time.sleep(1)


def _await_healthy(controller: object, host: str, timeout_s: float = 90.0) -> None:
    """Wait until a cleared host is healthy again, so the next scenario starts clean."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        verdicts, _, _ = controller.look()  # type: ignore[attr-defined]
        if next(v for v in verdicts if v.host == host).health.value == "healthy":
            return
        time.sleep(1)
    print(f"warning: {host} not healthy {timeout_s:g} s after the fault was cleared",
          file=sys.stderr)


def summary(rows: list[Row]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for path in ("rules", "rules+llm"):
        mine = [r for r in rows if r.path == path]
        times = [r.seconds for r in mine]
        out[path] = {"cases": len(mine),
                     "fault_accuracy": round(sum(r.fault_ok for r in mine) / len(mine), 3),
                     "remediation_accuracy": round(sum(r.fix_ok for r in mine) / len(mine), 3),
                     "approvals": sum(r.approval for r in mine),
                     "seconds_median": round(statistics.median(times), 3),
                     "seconds_max": round(max(times), 3),
                     "llm": {s: sum(r.llm == s for r in mine) for s in {r.llm for r in mine}}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", action="store_true", help="also run the lab faults")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ[KEY_ENV] = KEY
    imported = import_seconds()
    rows = fixture_rows()
    if args.lab:
        rows += lab_rows()
    totals = summary(rows)
    result = {"summary": totals, "litellm_import_s": round(imported, 2),
              "rows": [r.__dict__ for r in rows]}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for r in rows:
        print(f"{r.case:40s} {r.path:10s} fault {'ok' if r.fault_ok else 'MISS':4s} "
              f"fix {'ok' if r.fix_ok else 'MISS':4s} {r.seconds:6.2f}s llm {r.llm}"
              f"{' approval' if r.approval else ''} {r.subject} {r.parts}"
              f"{'' if r.fault_ok and r.fix_ok else ' got ' + r.got}")
    for path, s in totals.items():
        print(f"{path}: {s}")
    print(f"importing litellm once per process: {imported:.2f} s (not in the rows)")


if __name__ == "__main__":
    main()
