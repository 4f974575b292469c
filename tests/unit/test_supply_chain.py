"""pyproject.toml and the hashed lock files must agree (docs/supply-chain.md).

The controller holds SSH keys to the whole fleet, so `make venv` (and CI) installs only what the
locks pin, with `pip install --require-hashes`. These tests fail when a dependency is added or
tightened in pyproject.toml without `make lock`, when a lock line carries no hash or no exact pin,
when a lock names an index (a registry host), when litellm's compromised releases could be
installed, or when a runtime dependency is imported nowhere (or an import is not declared).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# lock file -> the extras of pyproject.toml it holds (besides [project] dependencies and the
# build backend, which every lock holds).
LOCKS = {"requirements.lock": (), "requirements-llm.lock": ("llm",),
         "requirements-dev.lock": ("dev", "llm")}
# Extras no lock holds, with the reason; `make` does not install them.
UNLOCKED_EXTRAS: dict[str, str] = {}
# Published with a credential stealer in March 2026.
LITELLM_COMPROMISED = ("1.82.7", "1.82.8")

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def parse_lock(text: str) -> dict[str, tuple[Version, int]]:
    """Lock text -> {canonical name: (pinned version, number of hashes)}; anything else fails."""
    pins: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            assert current is not None, f"line {number}: a hash before any pin"
            assert HASH.fullmatch(line.rstrip(" \\")), f"line {number}: not a sha256 hash: {line}"
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
            continue
        match = PIN.match(line)
        assert match, f"line {number}: not an exact `name==version` pin: {line!r}"
        current = canonicalize_name(match.group(1))
        assert current not in pins, f"line {number}: {current} pinned twice"
        pins[current] = (Version(match.group(2)), 0)
    return pins


def lock_text(name: str) -> str:
    path = ROOT / name
    assert path.is_file(), f"{name} is missing: run `make lock`"
    return path.read_text()


def required(lock: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    specs = [*PYPROJECT["build-system"]["requires"], *project["dependencies"]]
    for extra in LOCKS[lock]:
        specs += project["optional-dependencies"][extra]
    return [Requirement(spec) for spec in specs]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_dependency_is_locked_at_a_version_pyproject_allows(lock: str) -> None:
    pins = parse_lock(lock_text(lock))
    problems = []
    for requirement in required(lock):
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in {lock}")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{requirement} but {lock} pins {name}=={pins[name][0]}")
    assert not problems, "; ".join(problems) + " (run `make lock`)"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_lock_line_is_hashed(lock: str) -> None:
    pins = parse_lock(lock_text(lock))
    assert pins, f"{lock} pins nothing"
    unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
    assert not unhashed, f"{lock}: no hash for {unhashed} (run `make lock`)"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_locks_name_no_index_and_no_options(lock: str) -> None:
    # Where packages come from is the installer's configuration, never written in the repo.
    options = [line for line in lock_text(lock).splitlines() if line.startswith("-")]
    assert not options, f"{lock} carries pip options: {options}"


def test_every_extra_is_locked_or_said_why_not() -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    locked = {extra for held in LOCKS.values() for extra in held}
    assert extras == locked | set(UNLOCKED_EXTRAS), (
        f"extras {sorted(extras - locked - set(UNLOCKED_EXTRAS))} are in no lock: add them to a "
        f"lock in the Makefile's `lock` target and to LOCKS here"
    )


def test_litellm_excludes_the_compromised_releases_wherever_it_is_named() -> None:
    project = PYPROJECT["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    named = [
        (group, Requirement(spec))
        for group, specs in groups.items()
        for spec in specs
        if canonicalize_name(Requirement(spec).name) == "litellm"
    ]
    assert named, "litellm is named nowhere in pyproject.toml: this guard would hold nothing"
    for group, requirement in named:
        allowed = [v for v in LITELLM_COMPROMISED if requirement.specifier.contains(v)]
        assert not allowed, f"pyproject [{group}] {requirement} allows litellm {allowed}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_no_lock_holds_a_compromised_litellm(lock: str) -> None:
    pinned = parse_lock(lock_text(lock)).get("litellm")
    assert pinned is None or str(pinned[0]) not in LITELLM_COMPROMISED, (
        f"{lock} pins litellm {pinned[0] if pinned else ''}, a release with a credential stealer"
    )


def test_parse_lock_refuses_ranges_and_reports_unhashed_pins() -> None:
    with pytest.raises(AssertionError, match="not an exact"):
        parse_lock("requests>=2\n")
    assert parse_lock("rich==13.0 \\\n    --hash=sha256:" + "a" * 64 + "\nidna==3.7\n") == {
        "rich": (Version("13.0"), 1),
        "idna": (Version("3.7"), 0),
    }


def _imported_distributions(folder: Path) -> dict[str, set[str]]:
    """{distribution: modules} for every third-party top-level import under ``folder``."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top in sys.stdlib_module_names or top == "orchestrator":
                    continue
                for distribution in owners.get(top, [f"<no installed distribution: {top}>"]):
                    found.setdefault(canonicalize_name(distribution), set()).add(top)
    return found


def test_every_runtime_dependency_is_imported_and_every_import_is_declared() -> None:
    declared = {
        canonicalize_name(Requirement(spec).name) for spec in PYPROJECT["project"]["dependencies"]
    }
    # the llm extra's packages are imported only where a model is configured (rca/llm.py)
    optional = {canonicalize_name(Requirement(spec).name)
                for spec in PYPROJECT["project"]["optional-dependencies"]["llm"]}
    imported = _imported_distributions(ROOT / "orchestrator")
    undeclared = {d: sorted(m) for d, m in imported.items() if d not in declared | optional}
    assert not undeclared, (
        f"orchestrator/ imports {undeclared} without declaring it in [project] dependencies: "
        "add it (and `make lock`)"
    )
    unused = sorted(declared - set(imported))
    assert not unused, f"[project] dependencies {unused} are imported nowhere: drop or use them"
