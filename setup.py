"""Build hook: ship the Ansible project and the default rules inside the package.

ansible/ and rules/ stay at the top of the checkout (where the ops team and the tests read them);
a wheel gets copies under ``orchestrator/bundled/``, which ``orchestrator.resources`` finds when
selfheal runs from an install instead of a checkout. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("ansible", "rules")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.retry", ".*")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "orchestrator" / "bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(Path(__file__).parent / name, target, ignore=JUNK)


setup(cmdclass={"build_py": BuildPy})
