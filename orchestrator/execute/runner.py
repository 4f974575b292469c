"""Run one catalog role with ansible-runner against an explicit host list; return an ``Outcome``.

Called by ``engine`` (remediate, then verify / rollback) and by ``selfheal remediate``. Safety:
targets must be a non-empty subset of the inventory (``limit=""`` would mean every host), and every
extra var is written to ``env/extravars`` tagged ``!unsafe`` so Ansible never templates text that
came from outside. Targets cannot widen, checked three times: the plays select the group
``selfheal_targets``, which a per-run inventory source fills with exactly the planned hosts by
comparing names (a host named like a group stays one host); Ansible's own resolution of that
group is compared with the plan before the run; and the hosts the run touched are compared with
the plan after it (an extra host makes the outcome ``widened``). Extension follows
ansible-runner: ``event_handler`` and ``cancel_callback`` are passed through.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.config import AnsibleSettings
from orchestrator.errors import TargetError, UnsafeValueError
from orchestrator.execute.inventory import RUN_GROUP, SAFE_NAME, Inventory
from orchestrator.execute.selection import load_ansible, selected_hosts
from orchestrator.models import Outcome, OutcomeStatus, Plan

log = logging.getLogger(__name__)

Phase = Literal["remediate", "verify", "rollback", "diagnose"]  # diagnose: read-only facts
KEEP_RUNS = 500  # run folders (artefacts) kept under runs_dir; older ones are removed
_VAR_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")


def run_group_source(targets: tuple[str, ...]) -> str:
    """An inventory source that puts exactly these inventory hosts in the group the plays use.

    Ansible's ``constructed`` plugin tests each host already in the inventory by name equality;
    it never creates a host and never reads a name as a pattern. Names are SAFE_NAME-checked.
    """
    return ("# Written by selfheal for one run: the play's hosts are exactly these.\n"
            "plugin: ansible.builtin.constructed\nstrict: true\n"
            f"groups:\n  {RUN_GROUP}: inventory_hostname in {json.dumps(list(targets))}\n")


def unsafe_extravars_yaml(variables: Mapping[str, Any]) -> str:
    """YAML where every string is ``!unsafe`` (JSON scalars are valid YAML flow scalars)."""
    lines = []
    for name, value in variables.items():
        if not _VAR_NAME.match(name):
            raise UnsafeValueError(f"refused extra var name {name[:80]!r}")
        if isinstance(value, bool | int | float):
            lines.append(f"{name}: {json.dumps(value)}")
        elif isinstance(value, str):
            lines.append(f"{name}: !unsafe {json.dumps(value)}")
        else:
            raise UnsafeValueError(f"extra var {name} must be a string or number, "
                                   f"not {type(value).__name__}")
    return "\n".join(lines) + "\n"


@dataclass
class AnsibleExecutor:
    """Runs plans; ``run_fn`` is ``ansible_runner.run`` unless a test passes its own."""

    settings: AnsibleSettings
    inventory: Inventory
    runs_dir: Path
    run_fn: Callable[..., Any] | None = None
    _prepared: bool = field(default=False, init=False)

    def prepare(self) -> None:
        """Start loading Ansible for the pre-run host check in the background (about 1 s once
        per process), so a heal about to run does not pay for it; a no-op once loaded."""
        if self._prepared:  # once per executor: a held fault must not start a thread a sweep
            return
        self._prepared = True
        config = self.settings.project_dir / "ansible.cfg"
        # not a daemon: a process that ends during the import (SIGTERM right after start-up)
        # waits the second it takes, where a daemon thread cut off at interpreter exit inside an
        # extension's import aborted it ("FATAL: exception not rethrown", exit -6, seen once in
        # test_every_loop_stops_on_sigterm)
        threading.Thread(target=load_ansible, args=(config,), daemon=False,
                         name="ansible-warm-up").start()

    def run(self, plan: Plan, phase: Phase = "remediate", check: bool = False,
            event_handler: Callable[[dict[str, Any]], bool] | None = None,
            cancel_callback: Callable[[], bool] | None = None) -> Outcome:
        targets = self.inventory.resolve(list(plan.targets))
        for name in targets:
            if not SAFE_NAME.match(name):
                raise TargetError(f"refused host name {name[:80]!r}")
        if not SAFE_NAME.match(plan.role):
            raise UnsafeValueError(f"refused role name {plan.role[:80]!r}")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        private = self.runs_dir / f"{stamp}-{plan.remediation}-{phase}-{uuid.uuid4().hex[:8]}"
        (private / "env").mkdir(parents=True, exist_ok=True)
        group_source = private / "selfheal_targets.yml"  # the plugin reads only .yml/.yaml
        group_source.write_text(run_group_source(targets))
        sources = [self.inventory.source.resolve(), group_source]
        limit = ",".join(targets)
        config = self.settings.project_dir / "ansible.cfg"
        selected = selected_hosts(sources, limit, RUN_GROUP, config)
        if sorted(selected) != sorted(targets):
            raise TargetError(
                f"refused: Ansible would run on {sorted(selected)[:20]} for a plan on "
                f"{sorted(targets)}; the inventory {self.inventory.source} changed since it was "
                f"read, or defines a group {RUN_GROUP!r} (a name selfheal keeps for itself)")
        extravars = {"selfheal_role": plan.role, **plan.params}
        (private / "env" / "extravars").write_text(unsafe_extravars_yaml(extravars))
        run_fn = self.run_fn
        if run_fn is None:
            import ansible_runner

            run_fn = ansible_runner.run
        bin_dir = str(Path(sys.executable).parent)
        envvars = {
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.runs_dir.parent / "cp"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        started = time.time()
        result = run_fn(
            private_data_dir=str(private),
            project_dir=str(self.settings.project_dir),
            playbook=str(self.settings.project_dir / "playbooks" / f"{phase}.yml"),
            inventory=[str(s) for s in sources],
            limit=limit,
            cmdline="--check --diff" if check else None,
            envvars=envvars,
            forks=self.settings.forks,
            timeout=int(self.settings.timeout_s),
            quiet=True,
            event_handler=event_handler,
            cancel_callback=cancel_callback,
        )
        outcome = _outcome(result, targets, started, time.time(), check, str(private))
        prune_runs(self.runs_dir, KEEP_RUNS)
        log.info("ansible run", extra={"remediation": plan.remediation, "phase": phase,
                                       "check": check, "status": outcome.status.value,
                                       "seconds": round(outcome.seconds, 2)})
        if outcome.extra_hosts:
            log.error("ansible run touched hosts outside its plan",
                      extra={"remediation": plan.remediation, "phase": phase,
                             "extra_hosts": list(outcome.extra_hosts)})
        return outcome


def prune_runs(runs_dir: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` run folders (names start with a sortable stamp)."""
    import shutil

    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    for old in folders[:-keep] if keep else folders:
        shutil.rmtree(old, ignore_errors=True)


def _brief(message: str, limit: int = 300) -> str:
    """One line; ssh's @@@ banners dropped; head and tail kept (the cause is often last)."""
    text = " ".join(re.sub(r"@{3,}", " ", message).split())
    return text if len(text) <= limit else f"{text[:100]} ... {text[-(limit - 105):]}"


def _failure_messages(result: Any) -> list[str]:
    messages: list[str] = []
    for event in getattr(result, "events", []) or []:
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            data = event.get("event_data", {})
            messages.append(f"{data.get('host')}: {data.get('task')}: "
                            f"{_brief(str(data.get('res', {}).get('msg', '')))}")
    return messages


def _outcome(result: Any, targets: tuple[str, ...], started: float, finished: float,
             check: bool, artifacts: str) -> Outcome:
    stats = result.stats or {}
    dark = tuple(sorted(stats.get("dark", {}) or {}))
    failed = tuple(sorted(set(stats.get("failures", {}) or {}) - set(dark)))
    changed = tuple(sorted(stats.get("changed", {}) or {}))
    touched = _touched_hosts(result)
    messages = _failure_messages(result)
    missing = [t for t in targets if t not in touched]
    if missing:
        messages.append(f"play did not reach {missing}")
    extra = tuple(sorted(touched - set(targets)))
    if extra:  # first: whatever else happened, the run went beyond its plan
        messages.append(f"play ran on {list(extra)}, which the plan did not name")
        status = OutcomeStatus.WIDENED
    elif result.status == "canceled" or result.status == "timeout":
        status = OutcomeStatus.CANCELED
        messages.append(f"run {result.status}")
    elif dark:
        status = OutcomeStatus.UNREACHABLE
    elif failed or missing or result.status != "successful":
        status = OutcomeStatus.FAILED
    else:
        status = OutcomeStatus.SUCCEEDED
    return Outcome(status=status, started_at=started, finished_at=finished, check_mode=check,
                   rc=result.rc, changed_hosts=changed, failed_hosts=failed,
                   unreachable_hosts=dark, extra_hosts=extra, messages=tuple(messages),
                   artifact_dir=artifacts)


def _touched_hosts(result: Any) -> set[str]:
    """Every host the run's stats or events name: a host is touched once a task was sent to it."""
    stats = result.stats or {}
    touched: set[str] = set()
    for per_host in stats.values():
        if isinstance(per_host, Mapping):
            touched |= set(per_host)
    for event in getattr(result, "events", []) or []:
        host = (event.get("event_data") or {}).get("host")
        if host:
            touched.add(str(host))
    return touched
