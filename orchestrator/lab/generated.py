"""The files ``lab up`` writes into the repository for the rest of selfheal to use, and removes.

Called by ``fleet.up`` and ``fleet.down``. ``inventories/lab/hosts.yml`` is an Ansible YAML
inventory of the lab hosts (pinned known_hosts, lab key). ``selfheal.yml`` points selfheal at the
lab's Prometheus and inventory; it is only written or removed when it is absent or carries the
lab's header line, so a hand-written settings file is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import yaml

from orchestrator.lab.layout import GROUPS, host_groups
from orchestrator.lab.paths import PROMETHEUS_LISTEN, LabPaths

log = logging.getLogger(__name__)

HEADER = "# written by selfheal lab up"


def write_inventory(paths: LabPaths, hosts: Mapping[str, str]) -> None:
    """Write the lab inventory: group ``lab`` with every host of ``hosts`` (name -> address).

    Ansible logs in as root and becomes another user (``postgres``) with ``su``: the lab image
    has no sudo.

    Its children are one group per service role of ``layout`` (web, db, app, plain), each with
    the hosts that run it, as a team's own inventory would group them.
    """
    ssh_args = f"-o UserKnownHostsFile={paths.known_hosts} -o StrictHostKeyChecking=yes"
    inventory = {
        "lab": {
            "hosts": {
                name: {
                    "ansible_host": address,
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(paths.client_key),
                    "ansible_ssh_common_args": ssh_args,
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_become_method": "su",  # root becomes e.g. postgres; no sudo here
                    "selfheal_prometheus_host": address,
                }
                for name, address in hosts.items()
            },
            "children": {
                group: {"hosts": {name: None for name in hosts if group in host_groups(name)}}
                for group in GROUPS
                if any(group in host_groups(name) for name in hosts)
            },
        }
    }
    paths.inventory.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(inventory, sort_keys=False, width=1000)
    paths.inventory.write_text(f"{HEADER}; removed by selfheal lab down\n{body}", encoding="utf-8")


def _ours(text: str) -> bool:
    return text.splitlines()[:1] == [HEADER]


def write_settings(paths: LabPaths) -> bool:
    """Write selfheal.yml for the lab unless a hand-written one exists; whether it was written."""
    target = paths.settings_file
    if target.exists() and not _ours(target.read_text(encoding="utf-8")):
        log.warning("%s was not written by the lab; leaving it as it is", target)
        return False
    target.write_text(
        f"{HEADER}\n"
        "prometheus:\n"
        f"  url: http://{PROMETHEUS_LISTEN}\n"
        "inventory:\n"
        f"  path: {paths.inventory}\n",
        encoding="utf-8",
    )
    return True


def remove(paths: LabPaths) -> None:
    """Remove the inventory and, when it carries the lab's header, selfheal.yml."""
    paths.inventory.unlink(missing_ok=True)
    target = paths.settings_file
    if target.exists():
        if _ours(target.read_text(encoding="utf-8")):
            target.unlink()
        else:
            log.info("%s was not written by the lab; leaving it", target)
