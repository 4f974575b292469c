#!/usr/bin/env python3
"""Mean time to recovery on the lab: inject a fault K times and time each phase of the heal.

    benchmarks/mttr.py [--fault service_crash] [--runs 5] [--via sweep|alertmanager] [--json]

Phases (see orchestrator/drill.py): detect (injection to the incident being opened), remediate
(the Ansible run), verify (play end to a fresh healthy Prometheus sample), end_to_end (injection
to verified healthy). Brings the lab up when it is not running and leaves it as it found it.
Runs rotate over the lab hosts with a fresh state dir, the remediation's cooldown set to 0 and no
flapping limit, because both exist to stop repeated fixes on one host, which is what a benchmark
does.

``--via alertmanager`` takes the service's path instead of a sweeping loop: Prometheus rules
generated from faults.yml fire, Alertmanager posts to ``selfheal serve`` (sweeping only every 10
minutes unless woken), and the drill watches serve's store (``orchestrator/lab/alerting.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console

from orchestrator import lab
from orchestrator.config import Settings, load_settings
from orchestrator.core.catalog import Catalog
from orchestrator.drill import DrillResult, await_drill, run_drill
from orchestrator.rules import Rules
from orchestrator.wiring import controller_for, rules_for

SEED_TARGETS_S = {"service_crash": 3.0, "disk_full": 5.0, "memory_leak": 10.0,
                  "cpu_runaway": 30.0, "tls_expiry": 60.0, "db_pool_exhausted": 10.0}
PHASES = ("detect", "remediate", "verify", "end_to_end")


def without_cooldowns(rules: Rules) -> Rules:
    """No cooldown and no flapping limit: the same host is healed again and again on purpose."""
    entries = {n: e.model_copy(update={"cooldown_s": 0.0})
               for n, e in rules.catalog.remediations.items()}
    flapping = rules.policy.flapping.model_copy(update={"max_returns": 1_000_000})
    return Rules(Catalog(remediations=entries), rules.faults,
                 rules.policy.model_copy(update={"flapping": flapping}))


def rules_without_cooldowns(source: Path, target: Path) -> Path:
    """A copy of the rules folder with ``without_cooldowns`` applied, for a serve process."""
    target.mkdir()
    for path in source.glob("*.yml"):
        data = yaml.safe_load(path.read_text())
        if path.name == "remediations.yml":
            for entry in data["remediations"].values():
                entry["cooldown_s"] = 0
        if path.name == "policy.yml":
            data.setdefault("flapping", {})["max_returns"] = 1_000_000
        (target / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def via_alertmanager(settings: Settings, fault: str, runs: int) -> list[DrillResult]:
    from orchestrator.lab.alerting import alert_path
    from orchestrator.store.audit import read_key
    from orchestrator.store.db import Store

    hosts = sorted(controller_for(settings).inventory.hosts)
    results = []
    with tempfile.TemporaryDirectory(prefix="selfheal-mttr-am-") as tmp:
        work = Path(tmp)
        rules = rules_without_cooldowns(settings.rules.dir, work / "rules")
        with alert_path(lab.lab_paths(), settings, rules, work) as chain:
            key = read_key(chain.state_dir / "audit.key")
            assert key is not None, "serve made no audit key"
            store = Store(f"sqlite:///{chain.state_dir / 'selfheal.db'}", key)
            for i in range(runs):
                results.append(await_drill(store, fault, hosts[i % len(hosts)],
                                           lambda f, h: lab.inject(f, h).injected_at))
    return results


def summary(results: list[DrillResult]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for phase in PHASES:
        values = [v for r in results if (v := getattr(r, f"{phase}_s")) is not None]
        out[phase] = ({"median": round(statistics.median(values), 3),
                       "min": round(min(values), 3), "max": round(max(values), 3)}
                      if values else {"median": None, "min": None, "max": None})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    healable = sorted(set(lab.FAULTS) & set(rules_for(load_settings(None)).faults.faults))
    parser.add_argument("--fault", default="service_crash", choices=healable,
                        help="a lab fault that rules/faults.yml can heal")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--via", choices=("sweep", "alertmanager"), default="sweep",
                        help="sweep: a loop sweeping every 0.2 s; alertmanager: Prometheus "
                        "rules -> Alertmanager -> selfheal serve")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    console = Console(stderr=True)
    was_up = lab.lab_is_up()
    if not was_up:
        with console.status("booting the lab"):
            lab.up(hosts=3)
    results: list[DrillResult] = []
    try:
        base = load_settings(lab.lab_paths().settings_file)
        if args.via == "alertmanager":
            with console.status(f"{args.fault} drills through Alertmanager"):
                results = via_alertmanager(base, args.fault, args.runs)
        else:
            results = sweep_drills(base, args, console)
    finally:
        if not was_up:
            lab.down()
    return report(args, results)


def sweep_drills(base: Settings, args: argparse.Namespace, console: Console
                 ) -> list[DrillResult]:
    """Drills through a loop that sweeps every 0.2 s in this process (``run_drill``)."""
    from rich.progress import Progress

    results: list[DrillResult] = []
    with tempfile.TemporaryDirectory(prefix="selfheal-mttr-") as state:
        data = base.model_dump(exclude={"source_file"})
        data["state"] = {"dir": state}
        settings = Settings(**data)
        controller = controller_for(settings, rules=without_cooldowns(rules_for(settings)))
        hosts = sorted(controller.inventory.hosts)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{args.fault} drills", total=args.runs)
            for i in range(args.runs):
                host = hosts[i % len(hosts)]
                results.append(run_drill(controller, args.fault, host,
                                         lambda f, h: lab.inject(f, h).injected_at))
                progress.advance(task)
    return results


def report(args: argparse.Namespace, results: list[DrillResult]) -> int:
    figures = summary(results)
    healed = sum(r.healed for r in results)
    if args.json:
        print(json.dumps({args.fault: figures, "via": args.via}))
    else:
        target = SEED_TARGETS_S.get(args.fault)
        print(f"{args.fault} via {args.via}: {healed}/{len(results)} healed over "
              f"{len(results)} runs")
        print(f"{'phase':<11} {'median':>8} {'min':>8} {'max':>8}   (seconds)")
        for phase in PHASES:
            f = figures[phase]
            row = " ".join(f"{f[k]:>8.2f}" if f[k] is not None else f"{'-':>8}"
                           for k in ("median", "min", "max"))
            print(f"{phase:<11} {row}")
        if target is not None:
            print(f"seed article's target for {args.fault}: < {target:g} s end to end")
        for r in results:
            if not r.healed:
                print(f"not healed: {r.host} ended {r.state}", file=sys.stderr)
    return 0 if healed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
