"""Build a ``Controller`` (and its parts) from ``Settings``: the one place parts are wired.

Called by the CLI commands, the lab demo and the benchmarks.
"""

from __future__ import annotations

import logging

from orchestrator.config import Settings
from orchestrator.detection import AnomalyWatch
from orchestrator.engine import Controller
from orchestrator.errors import RulesError
from orchestrator.execute.inventory import Inventory, load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.notify import Notifier
from orchestrator.rules import Rules, load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect
from orchestrator.store.audit import chain_marker, key_for_new_chain, read_key
from orchestrator.store.db import Store, recorded_history
from orchestrator.store.lock import ACT_WAIT_S, controller_lock

log = logging.getLogger(__name__)


def rules_for(settings: Settings) -> Rules:
    return load_rules(settings.rules.dir, settings.ansible.project_dir / "roles")


def inventory_for(settings: Settings) -> Inventory:
    return load_inventory(settings.inventory.path, settings.inventory.prometheus_host_var)


def store_for(settings: Settings) -> Store:
    """The store with its audit key; the key is created only for a store that never recorded."""
    settings.state.dir.mkdir(parents=True, exist_ok=True)
    path, url = settings.state.audit_key_path, settings.state.database_url
    key = read_key(path)
    if key is None:
        key = key_for_new_chain(path, recorded_history(url))
    return Store(url, key, chain_marker=chain_marker(path))


def controller_for(settings: Settings, rules: Rules | None = None,
                   inventory: Inventory | None = None, store: Store | None = None) -> Controller:
    inventory = inventory or inventory_for(settings)
    query = connect(settings.prometheus)
    watch = None
    if (settings.rules.dir / "detection.yml").is_file():
        try:
            watch = AnomalyWatch(settings, query, inventory.by_prometheus_host(),
                                 groups={n: h.groups for n, h in inventory.hosts.items()})
        except RulesError:
            raise  # a broken detection.yml is the operator's to fix: say so, exit 2
        except Exception:  # detection is advisory; a bad model or state must not stop healing
            log.exception("detection disabled for this run: it could not start")
    return Controller(
        rules=rules or rules_for(settings),
        inventory=inventory,
        source=PrometheusSource(query, settings.prometheus),
        executor=AnsibleExecutor(settings.ansible, inventory, settings.state.dir / "runs"),
        store=store or store_for(settings),
        watch=watch,
        notify=Notifier.from_settings(settings.notify).incident_changed,
        exclusive=lambda: controller_lock(settings.state.dir, wait_s=ACT_WAIT_S),
    )
