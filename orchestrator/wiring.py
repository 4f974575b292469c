"""Build a ``Controller`` (and its parts) from ``Settings``: the one place parts are wired.

Called by the CLI commands, the lab demo and the benchmarks.
"""

from __future__ import annotations

import logging
import os

from orchestrator.config import Settings
from orchestrator.detection import AnomalyWatch
from orchestrator.engine import Controller
from orchestrator.errors import RulesError
from orchestrator.execute.inventory import Inventory, load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.notify import Notifier
from orchestrator.rca.stage import RcaStage
from orchestrator.rules import Rules, load_rules
from orchestrator.sources.client import access
from orchestrator.sources.prometheus import PrometheusSource, connect, connect_range
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


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Every secret selfheal holds, so the root-cause analysis redacts them wherever they
    appear (a journal line, a prompt, a model's answer)."""
    found = [*access(settings.prometheus).secrets,
             *(url.get_secret_value() for url in settings.notify.urls)]
    key_env = settings.llm.api_key_env
    if key_env and os.environ.get(key_env):
        found.append(os.environ[key_env])
    return tuple(found)


def rca_for(settings: Settings, rules: Rules, inventory: Inventory, executor: AnsibleExecutor,
            store: Store | None) -> RcaStage:
    """The root-cause analysis stage (``selfheal diagnose`` and the sweep's hook)."""
    return RcaStage(rules=rules, inventory=inventory, settings=settings.rca, llm=settings.llm,
                    query_range=connect_range(settings.prometheus), executor=executor,
                    store=store, instance_label=settings.prometheus.instance_label,
                    secrets=secrets_of(settings))


def controller_for(settings: Settings, rules: Rules | None = None,
                   inventory: Inventory | None = None, store: Store | None = None) -> Controller:
    inventory = inventory or inventory_for(settings)
    rules = rules or rules_for(settings)
    executor = AnsibleExecutor(settings.ansible, inventory, settings.state.dir / "runs")
    store = store or store_for(settings)
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
    stage = rca_for(settings, rules, inventory, executor, store) if settings.rca.in_sweep else None
    return Controller(
        rules=rules,
        inventory=inventory,
        source=PrometheusSource(query, settings.prometheus),
        executor=executor,
        store=store,
        explain=stage.for_incident if stage is not None else None,
        explain_deadline_s=settings.rca.deadline_s,
        watch=watch,
        notify=Notifier.from_settings(settings.notify).incident_changed,
        exclusive=lambda: controller_lock(settings.state.dir, wait_s=ACT_WAIT_S),
    )
