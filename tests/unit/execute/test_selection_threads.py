"""Two runs of one sweep resolve their hosts at once: Ansible's plugin loader must not race.

In a fresh process (the plugin cache cold, as in a service's first sweep), six threads build
inventories at once; without ``selection._parsing`` five of six failed here with "module
'ansible.plugins.inventory.script' has no attribute 'InventoryModule'".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.config import PROJECT_ROOT

PROBE = """
import sys, threading
from pathlib import Path
from orchestrator.execute.selection import load_ansible, selected_hosts
inventory, config = Path(sys.argv[1]), Path(sys.argv[2])
load_ansible(config)
got, errors = [], []
def resolve():
    try:
        got.append(selected_hosts([inventory], "web1", "all", config))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=resolve) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(len(got), errors[:1])
"""


def test_concurrent_inventories_resolve_in_a_cold_process(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("web1 ansible_host=127.0.0.1\nweb2 ansible_host=127.0.0.1\n")
    done = subprocess.run([sys.executable, "-c", PROBE, str(inventory),
                           str(PROJECT_ROOT / "ansible" / "ansible.cfg")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "6 []", done.stdout
