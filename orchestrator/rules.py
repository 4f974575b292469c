"""Read the rules folder from disk and hand the text to the pure parsers in ``orchestrator.core``.

Called once per command by the CLI (and by tests with their own folders). Also reads each role's
``meta/argument_specs.yml`` so catalog parameters are checked against what the role accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestrator.core.catalog import Catalog, check_role_arguments, parse_catalog
from orchestrator.core.detect.rules import DetectionRules, parse_detection
from orchestrator.core.faults import FaultRules, parse_faults
from orchestrator.core.policy import Policy, parse_policy
from orchestrator.core.signals import Signal, parse_signals
from orchestrator.errors import RulesError


@dataclass(frozen=True)
class Rules:
    catalog: Catalog
    faults: FaultRules
    policy: Policy


def _read(path: Path) -> str:
    if not path.is_file():
        raise RulesError(f"{path}: missing; every rules folder needs signals.yml, faults.yml, "
                         "remediations.yml and policy.yml (detection.yml for the detectors)")
    return path.read_text()


def role_options(roles_dir: Path) -> dict[str, set[str] | None]:
    """Each role's option names from ``meta/argument_specs.yml`` (None when it has none)."""
    found: dict[str, set[str] | None] = {}
    if not roles_dir.is_dir():
        return found
    for role in sorted(p for p in roles_dir.iterdir() if p.is_dir()):
        spec = role / "meta" / "argument_specs.yml"
        if not spec.is_file():
            found[role.name] = None
            continue
        try:
            data = yaml.safe_load(spec.read_text()) or {}
            options = data["argument_specs"]["main"].get("options") or {}
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise RulesError(f"{spec}: expected argument_specs.main.options ({exc})") from exc
        found[role.name] = set(options)
    return found


def load_signals(rules_dir: Path) -> Mapping[str, Signal]:
    """The signal catalog, ``signals.yml``, shared by fault rules and detectors."""
    path = rules_dir / "signals.yml"
    return parse_signals(_read(path), str(path))


def load_detection(rules_dir: Path, catalog: Mapping[str, Signal] | None = None
                   ) -> DetectionRules:
    """``detection.yml`` over the signal catalog (read from ``rules_dir`` unless the caller
    already has it); errors name the file, line and fix."""
    path = rules_dir / "detection.yml"
    return parse_detection(_read(path), str(path),
                           catalog if catalog is not None else load_signals(rules_dir))


def load_rules(rules_dir: Path, roles_dir: Path) -> Rules:
    """Load and cross-check the rules files; errors name the file, line and fix."""
    rem_path = rules_dir / "remediations.yml"
    catalog = parse_catalog(_read(rem_path), str(rem_path))
    check_role_arguments(catalog, role_options(roles_dir), str(rem_path))
    faults_path = rules_dir / "faults.yml"
    faults = parse_faults(_read(faults_path), catalog, load_signals(rules_dir), str(faults_path))
    policy_path = rules_dir / "policy.yml"
    policy = parse_policy(_read(policy_path), str(policy_path))
    return Rules(catalog=catalog, faults=faults, policy=policy)
