"""Which hosts Ansible itself would select for a run, resolved in-process before the play starts.

Called by ``runner.AnsibleExecutor`` just before each run, so a plan whose hosts Ansible would
read differently (a host renamed away, a group of the same name, a changed dynamic inventory) is
refused before anything runs. It uses Ansible's own ``InventoryManager`` (the same code
``ansible-playbook --list-hosts`` runs) in this process: the first call costs about 1 s (importing
Ansible and its plugin loader, once per process), each later one 0.02-0.08 s, against 1.7-2.1 s
for a ``--list-hosts`` subprocess on every run (measured here with a 4-host inventory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

_ready = threading.Lock()
_loaded: list[Path] = []
# Ansible's plugin loader is not thread-safe: two runs of one sweep (max_concurrent > 1)
# building inventories at once failed with "module 'ansible.plugins.inventory.script' has no
# attribute 'InventoryModule'" (seen under benchmarks/serve_load.py); one at a time, 0.02-0.08 s
_parsing = threading.Lock()


def load_ansible(config: Path) -> None:
    """Import Ansible once, reading the same ansible.cfg as the runs (its settings are global)."""
    with _ready:
        if _loaded:
            return
        saved = os.environ.get("ANSIBLE_CONFIG")
        os.environ["ANSIBLE_CONFIG"] = str(config)
        try:
            from ansible.plugins.loader import init_plugin_loader

            init_plugin_loader([])
        finally:
            if saved is None:
                os.environ.pop("ANSIBLE_CONFIG", None)
            else:
                os.environ["ANSIBLE_CONFIG"] = saved
        _loaded.append(config)


def selected_hosts(sources: Sequence[Path], limit: str, pattern: str,
                   config: Path) -> tuple[str, ...]:
    """The hosts a play with ``hosts: pattern`` run with ``--limit limit`` would select."""
    load_ansible(config)
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    with _parsing:
        manager = InventoryManager(loader=DataLoader(), sources=[str(s) for s in sources])
        manager.subset(limit)
        return tuple(host.name for host in manager.get_hosts(pattern))
