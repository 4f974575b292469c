#!/usr/bin/env python3
"""Mean time to recovery on the lab: inject a fault K times and time each phase of the heal.

    benchmarks/mttr.py [--fault service_crash|all] [--runs 5] [--sweep-every 1]
                       [--via sweep|alertmanager] [--json]

Phases (see orchestrator/drill.py): detect (injection to the incident being opened), remediate
(the Ansible run), verify (play end to a fresh healthy Prometheus sample), end_to_end (injection
to verified healthy). Each fault is drilled on the lab hosts that run what it needs, with the
controller sweeping every ``--sweep-every`` seconds, and printed beside the seed article's target
with the scrape and sweep intervals. Brings the lab up when it is not running and leaves it as it
found it. Runs rotate over the lab hosts the fault fits (its group: db for db_pool_exhausted),
each cleared afterwards (``lab.clear``), with a fresh state dir, the remediation's cooldown set
to 0 and no flapping limit, because both exist to stop repeated fixes on one host, which is what
a benchmark does.

``--via alertmanager`` takes the service's path instead of a sweeping loop: Prometheus rules
generated from faults.yml fire, Alertmanager posts to ``selfheal serve`` (sweeping only every 10
minutes unless woken), and the drill watches serve's store. ``selfheal lab up`` starts no
Alertmanager: this script starts the second Prometheus (with the rules), Alertmanager and serve
beside the running lab and stops them after (``orchestrator/lab/alerting.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from orchestrator import lab, logs
from orchestrator.config import Settings, load_settings
from orchestrator.core.catalog import Catalog
from orchestrator.drill import DrillResult, await_drill, run_drill
from orchestrator.engine import Controller
from orchestrator.lab import layout
from orchestrator.rules import Rules
from orchestrator.wiring import controller_for, rules_for

SEED_TARGETS_S = {"service_crash": 3.0, "disk_full": 5.0, "memory_leak": 10.0,
                  "cpu_runaway": 30.0, "tls_expiry": 60.0, "db_pool_exhausted": 10.0}
PHASES = ("detect", "remediate", "verify", "end_to_end")


def without_cooldowns(rules: Rules) -> Rules:
    """No cooldown and no flapping limit: the same host is healed again and again on purpose.
    Mode relaxed: tier-2 fixes (a certificate renewal, a release rollback) run and notify
    instead of waiting for an approver, who would be timed too."""
    entries = {n: e.model_copy(update={"cooldown_s": 0.0})
               for n, e in rules.catalog.remediations.items()}
    flapping = rules.policy.flapping.model_copy(update={"max_returns": 1_000_000})
    return Rules(Catalog(remediations=entries), rules.faults,
                 rules.policy.model_copy(update={"flapping": flapping, "mode": "relaxed"}))


def summary(results: list[DrillResult]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for phase in PHASES:
        values = [v for r in results if (v := getattr(r, f"{phase}_s")) is not None]
        out[phase] = ({"median": round(statistics.median(values), 3),
                       "min": round(min(values), 3), "max": round(max(values), 3)}
                      if values else {"median": None, "min": None, "max": None})
    return out


def lab_hosts_for(fault: str, hosts: list[str]) -> list[str]:
    """The lab hosts that run what ``fault`` needs (``lab.FAULTS[fault].group``)."""
    group = lab.FAULTS[fault].group
    return [h for h in hosts if group is None or layout.runs(h, group)]


def drill_fault(controller: Controller, fault: str, runs: int, sweep_every_s: float,
                progress: Any) -> list[DrillResult]:
    """``runs`` drills of ``fault``, rotating over the hosts that can have it; the lab clears
    what is left of the fault after each (a filler unit, a staged file), healed or not, so the
    next drill starts from a healthy host."""
    hosts = lab_hosts_for(fault, sorted(controller.inventory.hosts))
    results: list[DrillResult] = []
    task = progress.add_task(f"{fault} drills", total=runs)
    for i in range(runs):
        host = hosts[i % len(hosts)]
        result = run_drill(controller, fault, host, lambda f, h: lab.inject(f, h).injected_at,
                           poll_s=sweep_every_s)
        lab.clear(fault, host)
        results.append(result)
        progress.advance(task)
    return results


def rules_without_cooldowns(source: Path, target: Path) -> Path:
    """A copy of the rules folder with ``without_cooldowns`` applied, for a serve process."""
    import yaml

    target.mkdir()
    for path in source.glob("*.yml"):
        data = yaml.safe_load(path.read_text())
        if path.name == "remediations.yml":
            for entry in data["remediations"].values():
                entry["cooldown_s"] = 0
        if path.name == "policy.yml":
            data.setdefault("flapping", {})["max_returns"] = 1_000_000
            data["mode"] = "relaxed"
        (target / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def via_alertmanager(settings: Settings, faults: list[str], runs: int, progress: Any
                     ) -> dict[str, list[DrillResult]]:
    """Drills through Prometheus rules -> Alertmanager -> selfheal serve, which does every
    sweep (``await_drill`` watches its store)."""
    from orchestrator.lab.alerting import alert_path
    from orchestrator.store.audit import read_key
    from orchestrator.store.db import Store

    hosts = sorted(controller_for(settings).inventory.hosts)
    results: dict[str, list[DrillResult]] = {}
    with tempfile.TemporaryDirectory(prefix="selfheal-mttr-am-") as tmp:
        work = Path(tmp)
        rules = rules_without_cooldowns(settings.rules.dir, work / "rules")
        with alert_path(lab.lab_paths(), settings, rules, work) as chain:
            key = read_key(chain.state_dir / "audit.key")
            assert key is not None, "serve made no audit key"
            store = Store(f"sqlite:///{chain.state_dir / 'selfheal.db'}", key)
            for fault in faults:
                fits = lab_hosts_for(fault, hosts)
                task = progress.add_task(f"{fault} drills via Alertmanager", total=runs)
                done = results.setdefault(fault, [])
                for i in range(runs):
                    host = fits[i % len(fits)]
                    done.append(await_drill(store, fault, host,
                                            lambda f, h: lab.inject(f, h).injected_at))
                    lab.clear(fault, host)
                    progress.advance(task)
    return results


def scrape_interval_s() -> float:
    """The lab Prometheus's global scrape interval, from the config the lab wrote."""
    import yaml

    config = yaml.safe_load(lab.lab_paths().prometheus_config.read_text())
    return float(str(config["global"]["scrape_interval"]).rstrip("s"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    healable = sorted(set(lab.FAULTS) & set(SEED_TARGETS_S))
    parser.add_argument("--fault", default="service_crash", choices=[*healable, "all"],
                        help="a seed fault the lab can inject, or all of them")
    parser.add_argument("--runs", type=int, default=5, help="drills per fault")
    parser.add_argument("--sweep-every", type=float, default=1.0, metavar="SECONDS",
                        help="the controller's sweep interval during a drill (sweep --every)")
    parser.add_argument("--via", choices=("sweep", "alertmanager"), default="sweep",
                        help="sweep: a controller sweeping every --sweep-every seconds; "
                        "alertmanager: Prometheus rules -> Alertmanager -> selfheal serve, "
                        "all started here beside the lab (`lab up` starts no Alertmanager)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    faults = healable if args.fault == "all" else [args.fault]
    logs.setup("WARNING")  # the controller's warnings (e.g. detector anomalies) with their fields

    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    was_up = lab.lab_is_up()
    if not was_up:
        with console.status("booting the lab"):
            lab.up(hosts=4)
    results: dict[str, list[DrillResult]] = {}
    try:
        scrape_s = scrape_interval_s()
        base = load_settings(lab.lab_paths().settings_file)
        if args.via == "alertmanager":
            with Progress(console=console, transient=True) as progress:
                results = via_alertmanager(base, faults, args.runs, progress)
        else:
            results = sweep_drills(base, faults, args, console)
    finally:
        if not was_up:
            lab.down()
    return report(args, results, scrape_s)


def sweep_drills(base: Settings, faults: list[str], args: argparse.Namespace, console: Any
                 ) -> dict[str, list[DrillResult]]:
    """Drills with a controller in this process sweeping every ``--sweep-every`` seconds."""
    from rich.progress import Progress

    results: dict[str, list[DrillResult]] = {}
    with tempfile.TemporaryDirectory(prefix="selfheal-mttr-") as state:
        data = base.model_dump(exclude={"source_file"})
        data["state"] = {"dir": state}
        settings = Settings(**data)
        controller = controller_for(settings, rules=without_cooldowns(rules_for(settings)))
        with Progress(console=console, transient=True) as progress:
            for fault in faults:
                results[fault] = drill_fault(controller, fault, args.runs, args.sweep_every,
                                             progress)
    return results


def report(args: argparse.Namespace, results: dict[str, list[DrillResult]],
           scrape_s: float) -> int:
    sweep = (f"controller sweep every {args.sweep_every:g} s" if args.via == "sweep" else
             "via Alertmanager (serve sweeps every 600 s unless an alert wakes it)")
    out: dict[str, dict[str, Any]] = {}
    for fault, done in results.items():
        out[fault] = {**summary(done), "healed": sum(r.healed for r in done), "runs": len(done),
                      "target_s": SEED_TARGETS_S[fault], "scrape_interval_s": scrape_s,
                      "sweep_interval_s": args.sweep_every if args.via == "sweep" else 600,
                      "via": args.via, "policy_mode": "relaxed"}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"Prometheus scrape interval {scrape_s:g} s, {sweep}, policy mode relaxed, no "
              f"cooldowns, {args.runs} drill(s) per fault; seconds")
        print(f"{'fault':<18} {'healed':>7} " + " ".join(f"{p:>11}" for p in PHASES)
              + f" {'seed target':>12}")
        for fault, row in out.items():
            medians = " ".join(f"{row[p]['median']:>11.2f}" if row[p]["median"] is not None
                               else f"{'-':>11}" for p in PHASES)
            end = row["end_to_end"]["median"]
            verdict = "" if end is None else ("  met" if end < row["target_s"] else "  missed")
            print(f"{fault:<18} {row['healed']:>3}/{row['runs']:<3} {medians} "
                  f"{'< ' + format(row['target_s'], 'g'):>12}{verdict}")
        print("(medians; min and max per phase in --json)")
        for fault, done in results.items():
            for r in done:
                if not r.healed:
                    print(f"not healed: {fault} on {r.host} ended {r.state}", file=sys.stderr)
    return 0 if all(r.healed for done in results.values() for r in done) else 1


if __name__ == "__main__":
    sys.exit(main())
