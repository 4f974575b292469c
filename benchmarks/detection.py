"""Detection quality and speed: NAB tuning subset, lab scenario suite, fleet-scale timings.

Run ``python benchmarks/detection.py`` for tables, ``--json`` for one machine-readable object:
``{"nab_tuning": {...}, "scenarios": {"<detector>": {...}}, "speed": {...}}``. Every detector
runs with the project's frozen defaults (``rules/detection.yml`` and
``orchestrator.core.detect.stream.BaselineParams``); nothing here looks at labels while detecting.
Options: ``--skip nab,scenarios,speed`` to leave parts out, ``--nab-dir`` for another copy of the
tuning subset. Exit codes: 0 ok, 2 error (data missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import STEP, Scenario, generate  # noqa: E402

from orchestrator.core.detect import nab  # noqa: E402
from orchestrator.core.detect.combiner import Candidate, combine  # noqa: E402
from orchestrator.core.detect.fleet import LEARNED, FleetDetector, train_detector  # noqa: E402
from orchestrator.core.detect.iforest import fit_forest  # noqa: E402
from orchestrator.core.detect.rules import DetectionRules  # noqa: E402
from orchestrator.core.detect.stream import BaselineState, score_series  # noqa: E402
from orchestrator.rules import load_detection  # noqa: E402

NAB_DIR = ROOT.parent / "shared" / "datasets" / "nab-tuning"
GRACE_S = 3600.0  # a finding up to an hour after a fault window still belongs to it
COMBINED = "selfheal"  # all learned detectors through the combiner
# The subjects (signals or patterns) whose findings count as finding each kind of fault.
RELEVANT = {
    "slow_leak": {"memory_available", "service_rss", "leak_and_write_amplification"},
    "disk_fill": {"disk_available", "disk_fill_rate", "runaway_and_log_explosion",
                  "leak_and_write_amplification"},
    "cpu_runaway": {"cpu", "load", "service_cpu", "runaway_and_log_explosion"},
    "ddos": {"network_in", "network_out", "cpu", "load", "possible_ddos"},
}


def load_rules() -> DetectionRules:
    return load_detection(ROOT / "rules")


# --- NAB -------------------------------------------------------------------------------------

def _seconds(stamps: Sequence[str]) -> np.ndarray:
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(list(stamps)))
    return ((parsed - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(float)


def run_nab(data_dir: Path = NAB_DIR, progress: bool = True) -> dict[str, object]:
    """Score the frozen baseline on every file of the tuning subset under NAB's three profiles."""
    import pandas as pd

    labels = json.loads((data_dir / "labels" / "combined_windows.json").read_text())
    per_profile: dict[str, list[nab.FileScore]] = {p.name: [] for p in nab.PROFILES}
    files: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    for name in sorted(labels):
        frame = pd.read_csv(data_dir / "data" / name)
        times = _seconds(frame["timestamp"])
        _, flags, _ = score_series(times, frame["value"].to_numpy(float))
        windows = nab.window_rows(times, [(float(a), float(b)) for a, b in
                                          zip(_seconds([w[0] for w in labels[name]]),
                                              _seconds([w[1] for w in labels[name]]),
                                              strict=True)]) if labels[name] else []
        for p in nab.PROFILES:
            per_profile[p.name].append(nab.score_file(flags, windows, p))
        s = per_profile["standard"][-1]
        files[name] = {"windows": s.windows, "detected": s.detected,
                       "false_positives": s.false_positives, "raw_standard": round(s.score, 3)}
        if progress:
            print(f"  nab {name}: {s.detected}/{s.windows} windows, {s.false_positives} FP",
                  file=sys.stderr)
    result: dict[str, object] = {p.name: round(nab.normalised(per_profile[p.name], p), 2)
                                 for p in nab.PROFILES}
    result["files"] = files
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# --- scenarios -------------------------------------------------------------------------------

def replay(scn: Scenario, rules: DetectionRules) -> dict[str, list[list[Candidate]]]:
    """Candidates per detector per judged sweep, after ``train_detector`` on the history window.

    Training is what ``selfheal baseline train`` does (incident windows masked out, forest fitted
    on the rest); judging is what the sweep does, except that the forest scores all judged rows in
    one batch afterwards (the same scores, much faster than one call per sweep).
    """
    train = scn.times < scn.train_until
    clean = np.ones((int(train.sum()), len(scn.hosts)), dtype=bool)
    for e in scn.events:
        if e.fault:
            hit = (scn.times[train] >= e.start) & (scn.times[train] <= e.end + GRACE_S)
            clean[hit, scn.hosts.index(e.host)] = False
    fd = train_detector(rules, scn.hosts, scn.times[train],
                        {s: v[train] for s, v in scn.values.items()}, clean, step_s=STEP)
    forest = fd.forest
    assert forest is not None
    fd.detectors = ("thresholds", "baseline", "forecast", "patterns")
    judged: list[tuple[float, list[Candidate], np.ndarray, dict[str, np.ndarray]]] = []
    for r in np.nonzero(~train)[0]:
        t = float(scn.times[r])
        rows: list[np.ndarray] = []
        cands = fd.step(t, {s: v[r] for s, v in scn.values.items()}, collect=rows)
        judged.append((t, cands, rows[0], fd.derive_last))
    scores = forest.score(np.vstack([j[2] for j in judged])).reshape(len(judged), -1)
    out: dict[str, list[list[Candidate]]] = {d: [] for d in (*LEARNED, "thresholds")}
    for k, (t, cands, rows, vals) in enumerate(judged):
        for d in out:
            out[d].append([c for c in cands if c.detector == d])
        out["iforest"][-1] = fd.forest_candidates(t, rows, scores[k], vals)
    return out


def evaluate(scn: Scenario, per_sweep: list[list[Candidate]],
             rules: DetectionRules) -> dict[str, float | int | None]:
    """Event precision/recall, delay, false findings per host-day, leak lead time."""
    raised: dict[tuple[str, str], float] = {}
    findings = []
    for cands in per_sweep:
        found, raised = combine(cands, rules.defaults.combiner, raised)
        findings.extend(found)
    faults = [e for e in scn.events if e.fault and e.start >= scn.train_until]
    benign = [e for e in scn.events if not e.fault and e.start >= scn.train_until]

    def matches(f, e) -> bool:
        return (e.host == f.host and e.start <= f.observed_at <= e.end + GRACE_S
                and f.signal in RELEVANT[e.kind])

    def in_fault(f) -> bool:
        return any(matches(f, e) for e in faults)

    true = [f for f in findings if in_fault(f)]
    false = [f for f in findings if not in_fault(f)]
    on_benign = [f for f in false if any(e.host == f.host and e.start <= f.observed_at
                                         <= e.end + GRACE_S for e in benign)]
    delays, lead = [], None
    found_faults = 0
    for e in faults:
        hits = [f.observed_at for f in true if matches(f, e)]
        if hits:
            found_faults += 1
            delays.append(min(hits) - e.start)
            if e.exhausted_at is not None:
                lead = (e.exhausted_at - min(hits)) / 3600.0
    return {
        "precision": round(len(true) / len(findings), 3) if findings else 1.0,
        "recall": round(found_faults / len(faults), 3) if faults else 1.0,
        "faults_found": found_faults, "faults": len(faults),
        "findings": len(findings), "false_findings": len(false),
        "false_findings_on_benign_events": len(on_benign),
        "false_findings_per_host_day": round(float(len(false) / scn.eval_host_days), 3),
        "mean_delay_min": round(float(np.mean(delays)) / 60.0, 1) if delays else None,
        "leak_lead_hours": round(lead, 1) if lead is not None else None,
        "false_examples": [f"{f.host} {f.signal} at {f.observed_at:.0f}: {f.evidence[:1]}"
                           for f in false[:3]],
    }


def run_scenarios(seed: int = 7) -> dict[str, dict[str, float | int | None]]:
    rules = load_rules()
    scn = generate(seed)
    per = replay(scn, rules)
    result = {d: evaluate(scn, per[d], rules) for d in ("thresholds", *LEARNED)}
    merged = [[c for d in LEARNED for c in per[d][k]] for k in range(len(per["baseline"]))]
    result[COMBINED] = evaluate(scn, merged, rules)
    return result


# --- speed -----------------------------------------------------------------------------------

def run_speed(hosts: int = 10_000, train_hosts: int = 1_000, train_days: float = 7.0
              ) -> dict[str, float]:
    """Time one fleet sweep (hosts x 8 signals, one new point) and a baseline training run."""
    rules = load_rules()
    rng = np.random.default_rng(1)
    names = [f"h{i}" for i in range(hosts)]
    signals = [s for s in rules.signals if s != "node_up"][:8]
    fd = FleetDetector(rules, names, detectors=LEARNED)
    t0 = 1_700_000_000.0
    # Warm the state with a few sweeps (a trained model would come from the store).
    for k in range(30):
        fd.step(t0 + 60 * k, {s: rng.random(hosts) for s in signals})
    rows: list[np.ndarray] = []
    fd.step(t0 + 60 * 30, {s: rng.random(hosts) for s in signals}, collect=rows)
    fd.forest = fit_forest(rows[0], rules.defaults.isolation_forest)
    new = {s: rng.random(hosts) for s in signals}
    started = time.perf_counter()
    fd.step(t0 + 60 * 31, new)
    score_s = time.perf_counter() - started
    # Training: 1,000 hosts x 8 signals x 7 days at 1-minute resolution through the baselines,
    # collecting forest rows every 10 minutes, then fitting the forest.
    steps = int(train_days * 86400 / 60)
    series = train_hosts * len(signals)
    state = BaselineState.new(series)
    base = rng.random(series)
    collected = []
    started = time.perf_counter()
    for k in range(steps):
        step = state.step(t0 + 60 * k, base + 0.05 * rng.standard_normal(series))
        if k % 10 == 0:
            collected.append(step.z.reshape(train_hosts, len(signals)))
    fit_forest(np.vstack(collected), rules.defaults.isolation_forest)
    train_s = time.perf_counter() - started
    return {"score_10000x8_s": round(score_s, 3), "train_1000x7d_s": round(train_s, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--skip", default="", help="comma-separated: nab, scenarios, speed")
    parser.add_argument("--nab-dir", type=Path, default=NAB_DIR)
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    out: dict[str, object] = {}
    if "nab" not in skip:
        if not (args.nab_dir / "labels" / "combined_windows.json").is_file():
            print(f"error: {args.nab_dir} has no labels/combined_windows.json; pass --nab-dir",
                  file=sys.stderr)
            return 2
        nab_result = run_nab(args.nab_dir, progress=not args.json)
        out["nab_tuning"] = {k: v for k, v in nab_result.items() if k != "files"}
        if not args.json:
            print(f"NAB tuning subset: {out['nab_tuning']}")
    if "scenarios" not in skip:
        out["scenarios"] = run_scenarios()
        if not args.json:
            print("Scenario suite (10 hosts x 14 days, judged on the last 7):")
            for det, figures in out["scenarios"].items():  # type: ignore[union-attr]
                print(f"  {det:11s} {figures}")
    if "speed" not in skip:
        out["speed"] = run_speed()
        if not args.json:
            print(f"Speed: {out['speed']}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
