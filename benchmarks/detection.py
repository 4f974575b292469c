"""Detection quality and speed: NAB tuning subset, lab scenario suite, fleet-scale timings.

Run ``python benchmarks/detection.py`` for tables, ``--json`` for one machine-readable object:
``{"nab_tuning": {...}, "nab_cv": {...}, "scenarios": {"<detector>": {...}}, "speed": {...}}``.
Every detector runs with the project's frozen defaults (``rules/detection.yml`` and
``orchestrator.core.detect.stream.BaselineParams``), as the sweep and ``detect-csv`` do; nothing
here looks at labels while detecting. ``nab_tuning`` is in-sample (the defaults were chosen on
those files); ``nab_cv`` is the leave-one-folder-out figure of the procedure that chose them (see
``run_nab``), the one to quote. Options: ``--skip nab,nab_cv,scenarios,speed`` to leave parts out,
``--nab-dir`` for another copy of the tuning subset. Exit codes: 0 ok, 2 error (data missing).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
from orchestrator.core.detect.stream import (  # noqa: E402
    BaselineParams,
    score_series,
)
from orchestrator.rules import load_detection  # noqa: E402

NAB_DIR = ROOT.parent / "shared" / "datasets" / "nab-tuning"
GRACE_S = 3600.0  # a finding up to an hour after a fault window still belongs to it
COMBINED = "selfheal"  # all learned detectors through the combiner
# The settings the NAB cross-validation chooses among (the others stay as BaselineParams has them).
# The frozen defaults are this grid's pick on all five folders of the tuning subset.
CANDIDATES: dict[str, tuple[float, ...]] = {
    "level_rate": (0.003, 0.01),
    "scale_rate": (0.001, 0.003),
    "smooth": (0.3, 0.6),
    "smooth_slow": (0.03, 0.1),
    "memory_points": (1000.0, 2000.0, 4000.0),
    "min_surprise_fast": (4.0, 6.0),
    "min_surprise": (2.0, 3.0),
    "bump": (1.0, 1.2, 1.5),
    "settle_points": (150.0, 300.0),
}
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


@dataclass(frozen=True)
class NabFile:
    """One labelled file of the tuning subset."""

    name: str
    folder: str
    times: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]


def load_nab(data_dir: Path = NAB_DIR) -> list[NabFile]:
    """Every file of the tuning subset with its windows as row indices."""
    import pandas as pd

    labels = json.loads((data_dir / "labels" / "combined_windows.json").read_text())
    out = []
    for name in sorted(labels):
        frame = pd.read_csv(data_dir / "data" / name)
        times = _seconds(frame["timestamp"])
        windows = nab.window_rows(times, [(float(a), float(b)) for a, b in
                                          zip(_seconds([w[0] for w in labels[name]]),
                                              _seconds([w[1] for w in labels[name]]),
                                              strict=True)]) if labels[name] else []
        out.append(NabFile(name, name.split("/")[0], times, frame["value"].to_numpy(float),
                           windows))
    return out


def candidate_grid() -> list[dict[str, float]]:
    """Every combination of ``CANDIDATES``, in a fixed order."""
    keys = sorted(CANDIDATES)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(CANDIDATES[k] for k in keys))]


def score_grid(files: Sequence[NabFile], base: BaselineParams,
               grid: Sequence[dict[str, float]], progress: bool = True) -> np.ndarray:
    """NAB's raw per-file scores of every candidate: shape (candidates, files, profiles, 2)
    holding (score, false positives). One causal pass per file scores all candidates at once
    (``BaselineParams`` takes one value per series)."""
    out = np.zeros((len(grid), len(files), len(nab.PROFILES), 2))
    columns = {k: np.array([c[k] for c in grid], dtype=float) for k in grid[0]} if grid else {}
    params = replace(base, **columns)  # type: ignore[arg-type]
    for j, f in enumerate(files):
        _, flags, _ = score_series(f.times, np.repeat(f.values[:, None], len(grid), axis=1),
                                   params)
        for c in range(len(grid)):
            for p, profile in enumerate(nab.PROFILES):
                s = nab.score_file(flags[:, c], f.windows, profile)
                out[c, j, p] = (s.score, s.false_positives)
        if progress:
            print(f"  nab {f.name}: {len(grid)} candidate(s) scored", file=sys.stderr)
    return out


def _normalised(raw: np.ndarray, files: Sequence[NabFile], which: Sequence[int],
                profile: int) -> float:
    """NAB's normalised score of one candidate's raw scores (files, profiles, 2) over files."""
    p = nab.PROFILES[profile]
    return nab.normalised([nab.FileScore(float(raw[j, profile, 0]), _windows(files[j]), 0, 0)
                           for j in which], p)


def _windows(f: NabFile) -> int:
    probation = nab.probation_length(len(f.values))
    return sum(1 for _, last in f.windows if last >= probation)


def _figures(raw: np.ndarray, files: Sequence[NabFile], which: Sequence[int]
             ) -> dict[str, float]:
    out: dict[str, float] = {p.name: round(_normalised(raw, files, which, k), 2)
                             for k, p in enumerate(nab.PROFILES)}
    out["false_positives"] = int(sum(raw[j, 0, 1] for j in which))
    return out


def select(raw: np.ndarray, files: Sequence[NabFile], which: Sequence[int]) -> int:
    """The candidate with the best standard score over the files ``which`` (first on a tie)."""
    return int(np.argmax([_normalised(raw[c], files, which, 0) for c in range(len(raw))]))


def run_nab(data_dir: Path = NAB_DIR, progress: bool = True, cv: bool = True
            ) -> dict[str, object]:
    """The shipped defaults on the whole tuning subset (in-sample: they were chosen on it), and
    with ``cv`` the leave-one-folder-out figures of the procedure that chose them.

    Cross-validation: for each of the five folders, ``select`` picks among the ``CANDIDATES``
    grid by the standard score on the other four, and the pick is scored on the fifth. The
    out-of-fold figures are each fold's, their mean and worst fold, and all 34 files' out-of-fold
    detections scored together (``pooled``). The same procedure on all five folders must pick
    the shipped defaults (``shipped_is_selected``).
    """
    rules = load_rules()
    base = rules.defaults.baseline_params()
    files = load_nab(data_dir)
    started = time.perf_counter()
    grid = candidate_grid() if cv else []
    shipped = {k: float(getattr(base, k)) for k in CANDIDATES}
    if shipped not in grid:
        grid.append(shipped)
    raw = score_grid(files, base, grid, progress)
    everything = list(range(len(files)))
    me = grid.index(shipped)
    result: dict[str, object] = {"in_sample": _figures(raw[me], files, everything)}
    result["files"] = {f.name: {"windows": _windows(f), "raw_standard": round(raw[me, j, 0, 0], 3),
                                "false_positives": int(raw[me, j, 0, 1])}
                       for j, f in enumerate(files)}
    if cv:
        folders = sorted({f.folder for f in files})
        oof = np.zeros(raw.shape[1:])
        folds = []
        for folder in folders:
            held = [j for j, f in enumerate(files) if f.folder == folder]
            tuned = [j for j in everything if j not in held]
            pick = select(raw, files, tuned)
            oof[held] = raw[pick][held]
            folds.append({"held_out": folder, "files": len(held),
                          "windows": sum(_windows(files[j]) for j in held),
                          "picked": grid[pick],
                          "tuning_standard": round(_normalised(raw[pick], files, tuned, 0), 2),
                          **_figures(raw[pick], files, held)})
        names = [p.name for p in nab.PROFILES]
        with_windows = [f for f in folds if f["windows"]]
        result["cv"] = {
            "selection": "best standard score on the four other folders",
            "candidates": len(grid), "grid": {k: list(v) for k, v in CANDIDATES.items()},
            "folds": folds,
            "pooled": _figures(oof, files, everything),
            "mean": {n: round(float(np.mean([f[n] for f in folds])), 2) for n in names},
            "worst": {n: min(f[n] for f in folds) for n in names},
            "mean_folds_with_windows": {n: round(float(np.mean([f[n] for f in with_windows])), 2)
                                        for n in names},
            "shipped_is_selected": grid[select(raw, files, everything)] == shipped,
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# --- scenarios -------------------------------------------------------------------------------

def replay(scn: Scenario, rules: DetectionRules
           ) -> tuple[dict[str, list[list[Candidate]]], FleetDetector]:
    """Candidates per detector per judged sweep, after ``train_detector`` on the history window.

    Training is exactly what ``selfheal baseline train`` does, with the same masking: the
    scenario has no stored incidents, so only what the detector itself flags is left out (the
    labels are never used). Judging is what the sweep does, except that the forest scores all
    judged rows in one batch afterwards (the same scores, much faster than one call per sweep).
    """
    train = scn.times < scn.train_until
    fd = train_detector(rules, scn.hosts, scn.times[train],
                        {s: v[train] for s, v in scn.values.items()}, None, step_s=STEP)
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
    return out, fd


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


def training_masked(scn: Scenario, fd: FleetDetector) -> dict[str, object]:
    """What training left out because the detector flagged it, checked against the labels
    afterwards (the labels play no part in training): windows, points, and which labelled
    events of the history window they cover."""
    train = scn.times < scn.train_until
    events = [e for e in scn.events if e.start < scn.train_until]

    def covered(e) -> bool:
        return any(h == e.host and a <= e.end and b >= e.start for h, a, b in fd.self_masked)

    return {
        "windows": len(fd.self_masked),
        "points": int(sum(((scn.times[train] >= a) & (scn.times[train] <= b)).sum()
                          for _, a, b in fd.self_masked)),
        "faults_left_out": sum(covered(e) for e in events if e.fault),
        "faults": sum(1 for e in events if e.fault),
        "benign_events_left_out": sum(covered(e) for e in events if not e.fault),
        "benign_events": sum(1 for e in events if not e.fault),
    }


def run_scenarios(seed: int = 7) -> dict[str, dict[str, object]]:
    """Train as ``baseline train`` does on days 0-6 of the scenario, judge days 7-13."""
    rules = load_rules()
    scn = generate(seed)
    per, fd = replay(scn, rules)
    result: dict[str, dict[str, object]] = {
        d: evaluate(scn, per[d], rules) for d in ("thresholds", *LEARNED)}
    merged = [[c for d in LEARNED for c in per[d][k]] for k in range(len(per["baseline"]))]
    result[COMBINED] = evaluate(scn, merged, rules)
    result["training_masked"] = training_masked(scn, fd)
    return result


# --- speed -----------------------------------------------------------------------------------

def run_speed(hosts: int = 10_000, train_hosts: int = 1_000, train_days: float = 7.0
              ) -> dict[str, float]:
    """Time one fleet sweep (hosts x 8 signals, one new point) and ``train_detector`` as
    ``baseline train`` runs it."""
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
    # The median of five sweeps, wall clock and this process's CPU time (the machine is shared).
    walls, cpus = [], []
    for k in range(31, 36):
        new = {s: rng.random(hosts) for s in signals}
        started, cpu = time.perf_counter(), time.process_time()
        fd.step(t0 + 60 * k, new)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    # Training as `baseline train` runs it: 1,000 hosts x the signals x 7 days at 1 minute,
    # replayed twice (what the detector flags is left out of the second replay), then the forest.
    steps = int(train_days * 86400 / 60)
    base = rng.random((1, train_hosts))
    history = {s: base + 0.05 * rng.standard_normal((steps, train_hosts)) for s in signals}
    started, cpu = time.perf_counter(), time.process_time()
    train_detector(rules, names[:train_hosts], t0 + 60.0 * np.arange(steps), history)
    return {"score_10000x8_s": round(float(np.median(walls)), 3),
            "score_10000x8_cpu_s": round(float(np.median(cpus)), 3),
            "train_1000x7d_s": round(time.perf_counter() - started, 1),
            "train_1000x7d_cpu_s": round(time.process_time() - cpu, 1)}


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
        nab_result = run_nab(args.nab_dir, progress=not args.json, cv="nab_cv" not in skip)
        out["nab_tuning"] = {"in_sample": True, **nab_result["in_sample"],  # type: ignore[dict-item]
                             "seconds": nab_result["seconds"]}
        if "cv" in nab_result:
            out["nab_cv"] = nab_result["cv"]
        if not args.json:
            print(f"NAB tuning subset, shipped defaults (in-sample): {out['nab_tuning']}")
            if "nab_cv" in out:
                cv = out["nab_cv"]
                for fold in cv["folds"]:  # type: ignore[index]
                    print(f"  out-of-fold {fold}")
                print(f"NAB leave-one-folder-out: pooled {cv['pooled']}, mean {cv['mean']}, "  # type: ignore[index]
                      f"worst {cv['worst']}")  # type: ignore[index]
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
