"""The remediation catalog (``rules/remediations.yml``): the only things ever run automatically.

Parsed from YAML text by ``parse_catalog`` (called by ``orchestrator.rules``); ``plan`` binds an
entry to hosts and parameters. Each parameter comes from a constant, a Prometheus label, or a
``str.format`` template over labels, and must match its ``pattern`` before it can reach Ansible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.core.rulefile import fail, load_with_lines, validate

NAME = r"^[a-z][a-z0-9_]{0,63}$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Rule):
    """Where one role parameter's value comes from and what it must look like."""

    value: str | None = None
    from_label: str | None = None
    template: str | None = None
    pattern: str = Field(description="full-match regex every value must pass")

    @model_validator(mode="after")
    def _one_source(self) -> ParamSpec:
        sources = [s for s in (self.value, self.from_label, self.template) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of value, from_label or template")
        return self

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regex: {exc}") from exc
        return v


class VerifySpec(_Rule):
    """What must hold after the play: the fault's signal healthy on a fresh sample."""

    signal: str
    timeout_s: float = Field(30.0, gt=0)


class Remediation(_Rule):
    """One catalog entry: one Ansible role and how to run, verify and undo it."""

    name: str = Field(pattern=NAME)
    role: str = Field(pattern=NAME)
    description: str
    risk_tier: Annotated[int, Field(ge=1, le=3)]
    cooldown_s: float = Field(300.0, ge=0)
    check_first: bool = True
    params: Mapping[str, ParamSpec] = Field(default_factory=dict)
    verify: VerifySpec
    rollback: Literal["role", "none"] = "role"


class Catalog(_Rule):
    """All remediations by name."""

    remediations: Mapping[str, Remediation]

    def get(self, name: str) -> Remediation | None:
        return self.remediations.get(name)


class _File(_Rule):
    remediations: dict[str, dict[str, object]]


def parse_catalog(text: str, filename: str = "remediations.yml") -> Catalog:
    """Parse and validate the catalog; errors name the file, the line and the fix."""
    data, lines = load_with_lines(text, filename)
    top = validate(_File, data, filename, lines)
    entries: dict[str, Remediation] = {}
    for name, body in top.remediations.items():
        path = ("remediations", name)
        if not isinstance(body, dict):
            raise fail(filename, lines, path, "expected a mapping (role, risk_tier, verify, ...)")
        entries[name] = validate(Remediation, {"name": name, **body}, filename, lines, path)
    if not entries:
        raise fail(filename, lines, ("remediations",), "the catalog is empty; add an entry")
    return Catalog(remediations=entries)


def check_role_arguments(catalog: Catalog, role_options: Mapping[str, set[str] | None],
                         filename: str = "remediations.yml") -> None:
    """Every role exists and every parameter is an option of its ``meta/argument_specs.yml``.

    ``role_options`` maps role name to its option names (None: the role has no argument spec).
    """
    from orchestrator.errors import RulesError

    for entry in catalog.remediations.values():
        if entry.role not in role_options:
            raise RulesError(f"{filename}: remediations.{entry.name}.role: no role "
                             f"'{entry.role}' under ansible/roles/; create it or fix the name")
        options = role_options[entry.role]
        if options is None:
            raise RulesError(f"{filename}: remediations.{entry.name}: role '{entry.role}' has no "
                             "meta/argument_specs.yml; add one so its parameters are checked")
        unknown = sorted(set(entry.params) - options)
        if unknown:
            raise RulesError(f"{filename}: remediations.{entry.name}.params: {unknown} are not "
                             f"options of role '{entry.role}' (known: {sorted(options)})")
