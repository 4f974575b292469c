"""What checking a run's hosts with Ansible's own resolution costs: in-process against a
``ansible-playbook --list-hosts`` subprocess, on a throw-away 4-host inventory.

Run ``python benchmarks/target_check.py`` (``--runs N``, default 5). It prints the in-process
first call (Ansible's import, paid once per process), the later calls, and the subprocess per
call. ``runner.AnsibleExecutor`` uses the in-process check; this is why. Exit 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.config import PROJECT_ROOT
from orchestrator.execute.inventory import RUN_GROUP
from orchestrator.execute.runner import run_group_source
from orchestrator.execute.selection import selected_hosts

INVENTORY = "[db]\ndb\ndb2\ndb3\n[web]\nweb1\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    config = PROJECT_ROOT / "ansible" / "ansible.cfg"
    with tempfile.TemporaryDirectory() as tmp:
        inventory, group = Path(tmp) / "hosts.ini", Path(tmp) / "selfheal_targets.yml"
        inventory.write_text(INVENTORY)
        group.write_text(run_group_source(("db", "web1")))
        in_process = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            selected_hosts([inventory, group], "db,web1", RUN_GROUP, config)
            in_process.append(time.perf_counter() - started)
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                   "-i", str(group), str(PROJECT_ROOT / "ansible" / "playbooks" / "verify.yml"),
                   "--limit", "db,web1", "--list-hosts"]
        listing = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True,
                           env={"ANSIBLE_CONFIG": str(config), "PATH": "/usr/bin:/bin"})
            listing.append(time.perf_counter() - started)
    later = sorted(in_process[1:])
    print(f"in-process: first call {in_process[0]:.2f} s (imports Ansible once per process), "
          f"later calls median {later[len(later) // 2]:.3f} s")
    print(f"ansible-playbook --list-hosts subprocess: median {sorted(listing)[runs // 2]:.2f} s "
          "per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
