#!/usr/bin/env python3
"""Lab fidelity: how often does a restart right after a ``kill -9`` of the demo app fail?

    benchmarks/lab_restart.py [--rounds 30] [--host vps2 ...] [--json]

Each round kills the demo app's main process on the chosen hosts (default: every lab host) and
restarts it on all of them at once (orchestrator/lab/restarts.py). Prints the restarts that did
not leave the unit active, and how many of those were ``status=219/CGROUP``. On a real VPS the
rate is 0; docs/lab.md keeps the figures measured here. Brings the lab up when it is not running
and leaves it as it found it. Needs root.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from orchestrator import lab
from orchestrator.lab.restarts import Restart, crash_and_restart

CGROUP_STATUS = 219


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--host", action="append", help="a lab host (repeat); default: all")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    was_up = lab.lab_is_up()
    state = lab.up() if not was_up else None
    try:
        names = [h.name for h in lab.status().hosts]
        hosts = args.host or names
        unknown = sorted(set(hosts) - set(names))
        if unknown:
            parser.error(f"unknown lab hosts {unknown}; lab hosts: {', '.join(names)}")
        outcomes: list[Restart] = []
        for round_number in range(1, args.rounds + 1):
            for outcome in crash_and_restart(hosts):
                outcomes.append(outcome)
                if outcome.failed and not args.json:
                    print(f"round {round_number}: {outcome.host} {outcome.result} "
                          f"status={outcome.exec_status}", file=sys.stderr)
    finally:
        if state is not None:
            lab.down()

    failed = [o for o in outcomes if o.failed]
    report = {
        "hosts": hosts,
        "rounds": args.rounds,
        "restarts": len(outcomes),
        "failed": len(failed),
        "failure_rate": round(len(failed) / len(outcomes), 3),
        "cgroup_219": sum(o.exec_status == CGROUP_STATUS for o in failed),
        "by_result": dict(Counter(o.result for o in failed)),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['failed']}/{report['restarts']} restarts failed "
              f"({100 * report['failure_rate']:.1f} %), {report['cgroup_219']} with "
              f"status=219/CGROUP; hosts {', '.join(hosts)}, {args.rounds} rounds, each a kill -9 "
              f"then an immediate restart on every host at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
