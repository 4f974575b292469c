"""Root-cause analysis accuracy and cost: rules alone, and rules plus recorded model answers.

    .venv/bin/python benchmarks/rca.py            # the case folders of tests/fixtures/rca
    .venv/bin/python benchmarks/rca.py --lab      # plus the lab faults main has, and healthy hosts

Prints, per path, the accuracy of the fault class and of the chosen remediation (the report's
structured fields against each case's expected ones) and the time the stage adds (context
gathering and the model call). The model path goes through the real litellm client to a local
OpenAI-compatible server replaying the recorded answers (tests/rca_replay.py). In ``--lab`` mode
each lab fault is injected on one host, the rules' verdict awaited, the stage run for real
(Prometheus timeline, the diagnose role over SSH, the store), and the host restored; the
recorded answer of the case folder named after the fault is replayed for the model path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
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
    Reply,
    cases,
    load_case,
    project_rules,
    replay_server,
    stage,
)

# lab fault -> (case folder whose recorded answer is replayed, expected fault, remediation)
LAB_EXPECTED = {"service_crash": ("service_crash_agree", "service_crash", "service_restart"),
                "disk_full": ("", "disk_full", "disk_cleanup")}


@dataclass
class Row:
    case: str
    path: str
    fault_ok: bool
    fix_ok: bool
    seconds: float
    llm: str
    parts: str = ""  # where the time went (lab: timeline, facts, similar incidents)


def score(name: str, path: str, report: Report, expected: dict[str, object],
          seconds: float) -> Row:
    return Row(name, path, report.fault == expected["fault"],
               report.remediation == expected["remediation"], seconds, report.llm_status.value)


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
    from orchestrator.lab import faults as lab_faults
    from orchestrator.lab.paths import DEMO_UNIT
    from orchestrator.lab.probe import ssh_run
    from orchestrator.wiring import controller_for, rca_for

    settings = load_settings(None)
    controller = controller_for(settings)
    rules = controller.rules
    hosts = sorted(controller.inventory.hosts)
    rows: list[Row] = []
    restore = {"service_crash": ["systemctl", "restart", DEMO_UNIT],
               "disk_full": ["rm", "-f", "/srv/fill"]}
    with replay_server() as server:
        llm = server.settings(timeout_s=20)
        plain = rca_for(settings, rules, controller.inventory, controller.executor,
                        controller.store)
        with_llm = RcaStage(**{**plain.__dict__, "llm": llm})
        scenarios = [(f, hosts[i % len(hosts)]) for i, f in enumerate(sorted(LAB_EXPECTED))
                     if f in lab_faults.FAULTS]
        scenarios += [("benign", h) for h in hosts[-2:]]
        for fault, host in scenarios:
            if fault != "benign":
                lab_faults.inject(fault, host)
            verdict = _await(controller, host, fault != "benign")
            folder, want_fault, want_fix = LAB_EXPECTED.get(fault, ("benign_healthy", None, None))
            expected = {"fault": want_fault, "remediation": want_fix}
            diagnosis = verdict.diagnoses[0] if verdict.diagnoses else None
            started = time.monotonic()
            context = plain.gather(verdict, diagnosis)
            gathered = time.monotonic() - started
            name = f"lab:{fault}@{host}"
            report, took = run_case(plain, verdict, diagnosis, context)
            parts = " ".join(f"{k}={v:.1f}" for k, v in context.timings.items())
            rows.append(replace(score(name, "rules", report, expected, gathered + took),
                                parts=parts))
            answer = (CASES / folder / "answer.txt").read_text() if folder else '{"x": 1}'
            server.replies.append(Reply(answer))
            report, took = run_case(with_llm, verdict, diagnosis, context)
            rows.append(replace(score(name, "rules+llm", report, expected, gathered + took),
                                parts=f"{parts} llm={took:.2f}"))
            if fault in restore:
                ssh_run(host, restore[fault], timeout=30.0)
    return rows


def _await(controller: object, host: str, faulty: bool, timeout_s: float = 90.0) -> HostVerdict:
    """The host's verdict once the rules see the fault (or anything firing), else the last."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdicts, _, _ = controller.look()  # type: ignore[attr-defined]
        verdict: HostVerdict = next(v for v in verdicts if v.host == host)
        firing = verdict.diagnoses or verdict.health.value == "firing"
        if (firing if faulty else True) or time.monotonic() > deadline:
            if faulty and not verdict.diagnoses:
                time.sleep(5)  # let a slower signal catch up once more
                verdicts, _, _ = controller.look()  # type: ignore[attr-defined]
                verdict = next(v for v in verdicts if v.host == host)
            return verdict
        time.sleep(1)


def summary(rows: list[Row]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for path in ("rules", "rules+llm"):
        mine = [r for r in rows if r.path == path]
        times = [r.seconds for r in mine]
        out[path] = {"cases": len(mine),
                     "fault_accuracy": round(sum(r.fault_ok for r in mine) / len(mine), 3),
                     "remediation_accuracy": round(sum(r.fix_ok for r in mine) / len(mine), 3),
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
    result = {"summary": summary(rows), "litellm_import_s": round(imported, 2),
              "rows": [r.__dict__ for r in rows]}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for r in rows:
        print(f"{r.case:40s} {r.path:10s} fault {'ok' if r.fault_ok else 'MISS':4s} "
              f"fix {'ok' if r.fix_ok else 'MISS':4s} {r.seconds:6.2f}s llm {r.llm} {r.parts}")
    for path, s in result["summary"].items():
        print(f"{path}: {s}")
    print(f"importing litellm once per process: {imported:.2f} s (not in the rows)")


if __name__ == "__main__":
    main()
