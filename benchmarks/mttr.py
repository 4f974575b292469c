#!/usr/bin/env python3
"""Mean time to recovery on the lab: inject a fault K times and time each phase of the heal.

    benchmarks/mttr.py [--fault service_crash] [--runs 5] [--json]

Phases (see orchestrator/drill.py): detect (injection to the incident being opened), remediate
(the Ansible run), verify (play end to a fresh healthy Prometheus sample), end_to_end (injection
to verified healthy). Brings the lab up when it is not running and leaves it as it found it.
Runs rotate over the lab hosts the fault fits (its group: db for db_pool_exhausted), each
cleared afterwards (``lab.clear``), with a fresh state dir, the remediation's cooldown set to 0
and no flapping limit, because both exist to stop repeated fixes on one host, which is what a
benchmark does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile

from orchestrator import lab
from orchestrator.config import Settings, load_settings
from orchestrator.core.catalog import Catalog
from orchestrator.drill import DrillResult, run_drill
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
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    was_up = lab.lab_is_up()
    if not was_up:
        with console.status("booting the lab"):
            lab.up(hosts=3)
    results: list[DrillResult] = []
    try:
        base = load_settings(lab.lab_paths().settings_file)
        with tempfile.TemporaryDirectory(prefix="selfheal-mttr-") as state:
            data = base.model_dump(exclude={"source_file"})
            data["state"] = {"dir": state}
            settings = Settings(**data)
            controller = controller_for(settings, rules=without_cooldowns(rules_for(settings)))
            group = lab.FAULTS[args.fault].group  # e.g. db: only db hosts have a pool
            hosts = sorted(h for h, host in controller.inventory.hosts.items()
                           if group is None or group in host.groups)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"{args.fault} drills", total=args.runs)
                for i in range(args.runs):
                    host = hosts[i % len(hosts)]
                    try:
                        results.append(run_drill(controller, args.fault, host,
                                                 lambda f, h: lab.inject(f, h).injected_at))
                    finally:  # what a heal leaves (an injector's unit) would block the next run
                        lab.clear(args.fault, host)
                    progress.advance(task)
    finally:
        if not was_up:
            lab.down()
    figures = summary(results)
    healed = sum(r.healed for r in results)
    if args.json:
        print(json.dumps({args.fault: figures}))
    else:
        target = SEED_TARGETS_S.get(args.fault)
        print(f"{args.fault}: {healed}/{len(results)} healed over {len(results)} runs")
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
