"""orchestrator.core must stay pure: importing it pulls in no I/O library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ["httpx", "requests", "subprocess", "socket", "ansible_runner", "litellm",
             "sqlalchemy", "prometheus_api_client", "urllib3"]

PROBE = """
import sys, importlib, pkgutil
# Libraries core may use are loaded first: pydantic's plugin loader pulls in importlib.metadata
# (and through the stdlib email package, socket), which is not I/O done by core.
import pydantic, yaml
class _Warm(pydantic.BaseModel):
    x: int = 0
before = set(sys.modules)
pkg = importlib.import_module({package!r})
for mod in pkgutil.walk_packages(pkg.__path__, {package!r} + "."):
    importlib.import_module(mod.name)
print(",".join(sorted(m for m in {names} if m in sys.modules and m not in before)))
"""


def io_imports(package: str) -> list[str]:
    """Forbidden modules that importing every module of ``package`` loads, in a fresh process."""
    code = PROBE.format(package=package, names=FORBIDDEN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_core_imports_no_io_library() -> None:
    assert io_imports("orchestrator.core") == []


def test_probe_catches_io_in_a_package_that_has_it() -> None:
    assert "subprocess" in io_imports("orchestrator.execute")
