"""The team's own Ansible inventory, read through Ansible's own parser (``ansible-inventory``).

Called by the CLI and ``engine`` to learn which hosts exist and how each maps to its Prometheus
``instance`` (host variable ``selfheal_prometheus_host``, else ``ansible_host``, else the name).
Anything ``ansible-inventory`` reads works: INI, YAML, folders with group_vars, dynamic scripts.
Host names or addresses with characters outside a host name's alphabet are refused and logged;
so are Ansible host-pattern characters in names (``,:*?[]~!&``), which Ansible would read as a
pattern that selects other hosts. A host named like a group (host ``db`` in group ``db``) is
kept: the runner selects hosts by name equality, never by pattern (see ``runner``). An inventory
that defines the group ``selfheal_targets`` is refused: selfheal keeps that name for its runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError, TargetError

log = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_PATTERN_CHARS = set(",:*?[]~!&@")
RUN_GROUP = "selfheal_targets"  # the group the plays run on; filled per run by the runner
_SAFE_ADDRESS = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,252}|[0-9A-Fa-f:.]{2,45})$")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    prometheus_host: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    source: Path
    hosts: Mapping[str, Host]
    refused: tuple[str, ...] = field(default=())

    def by_prometheus_host(self) -> dict[str, str]:
        return {h.prometheus_host: h.name for h in self.hosts.values()}

    def resolve(self, names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Explicit, known targets; an empty or unknown set is an error, never "all"."""
        if not names:
            raise TargetError("no target hosts given; selfheal never treats an empty list as all")
        unknown = [n for n in names if n not in self.hosts]
        if unknown:
            raise TargetError(f"unknown host(s) {unknown} in inventory {self.source}; "
                              f"known: {sorted(self.hosts)[:20]}")
        return tuple(dict.fromkeys(names))


def _groups(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each host's groups, walking ``children`` from ``all``."""
    member: dict[str, list[str]] = {}

    def walk(group: str, trail: tuple[str, ...]) -> None:
        body = data.get(group, {})
        for host in body.get("hosts", []):
            member.setdefault(host, [])
            member[host].extend(g for g in (*trail, group) if g not in ("all", *member[host]))
        for child in body.get("children", []):
            if child not in trail:
                walk(child, (*trail, group))

    walk("all", ())
    return member


def ansible_command(name: str) -> str:
    """The Ansible CLI beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def parse_inventory_json(data: Mapping[str, Any], source: Path, host_var: str) -> Inventory:
    """Build an Inventory from ``ansible-inventory --list`` output."""
    if RUN_GROUP in data:
        raise InventoryError(f"inventory {source} defines a group {RUN_GROUP!r}; selfheal keeps "
                             "that name for the hosts of each run: rename the group")
    hostvars = data.get("_meta", {}).get("hostvars", {})
    groups = _groups(data)
    hosts: dict[str, Host] = {}
    refused: list[str] = []
    for name in sorted(set(groups) | set(hostvars)):
        hv = hostvars.get(name, {})
        address = str(hv.get("ansible_host", name))
        prom = str(hv.get(host_var, address))
        bad = [v for v in (name,) if not SAFE_NAME.match(v)] + [
            v for v in (address, prom) if not _SAFE_ADDRESS.match(v)]
        if bad and bad[0] == name and _PATTERN_CHARS & set(name):
            refused.append(f"host {name[:80]!r}: refused: Ansible reads "
                           f"{''.join(sorted(_PATTERN_CHARS & set(name)))!r} in a host name as a "
                           "host pattern that can select other hosts; rename the host (letters, "
                           "digits, '.', '_', '-') and keep its address in ansible_host")
            log.warning("refused inventory host", extra={"host": name[:200]})
            continue
        if bad:
            refused.append(f"host {name[:80]!r}: refused {bad[0][:80]!r} (shell or template "
                           "characters are not allowed in host names or addresses)")
            log.warning("refused inventory host", extra={"host": name[:200]})
            continue
        hosts[name] = Host(name, address, prom, tuple(groups.get(name, ())))
    by_address: dict[str, list[str]] = {}
    for host in hosts.values():
        by_address.setdefault(host.prometheus_host, []).append(host.name)
    for address, names in by_address.items():
        if len(names) > 1:  # whose series is whose? acting on a guess could fix the wrong host
            for name in names:
                del hosts[name]
            refused.append(f"hosts {names} share the Prometheus address {address!r}; give each "
                           f"its own {host_var} so their series can be told apart")
            log.warning("refused hosts sharing an address", extra={"hosts": names})
    return Inventory(source, hosts, tuple(refused))


def load_inventory(path: Path | None, host_var: str = "selfheal_prometheus_host",
                   timeout_s: float = 60.0) -> Inventory:
    """Run ``ansible-inventory --list`` on ``path``; unparsable sources are errors."""
    if path is None:
        raise InventoryError("no inventory configured; set inventory.path in selfheal.yml or "
                             "SELFHEAL_INVENTORY__PATH (or run `selfheal lab up` for the lab)")
    if not path.exists():
        raise InventoryError(f"inventory {path} does not exist; fix inventory.path")
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}
    try:
        done = subprocess.run([ansible_command("ansible-inventory"), "-i", str(path), "--list"],
                              env=env, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except FileNotFoundError as exc:
        raise InventoryError("ansible-inventory is not on PATH; install ansible-core") from exc
    except subprocess.TimeoutExpired as exc:
        raise InventoryError(f"ansible-inventory on {path} ran over {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        raise InventoryError(f"ansible-inventory could not read {path}: "
                             f"{done.stderr.strip()[-500:]}")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise InventoryError(f"ansible-inventory printed no JSON for {path}: {exc}") from exc
    inventory = parse_inventory_json(data, path, host_var)
    if not inventory.hosts:
        raise InventoryError(f"inventory {path} has no usable hosts")
    return inventory
