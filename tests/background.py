"""Slow work that needs nothing from the lab, started in the background when collection ends.

mypy, ansible-lint, the build of the installed wheel's venv and, on a fresh machine, the lab
image's debootstrap take about 4 minutes between them, and no test but their own needs them
first. Most tests spend their time waiting (scrapes, verify windows, plays over SSH), so the
second core is idle then; the lab's tests run after the unit and integration tests
(``testpaths`` in pyproject.toml) so the image is built meanwhile, and the static checks' tests
run last, so they find their results waiting. ``tests/conftest.py`` starts each of these
only when a selected test needs it; the test then collects the result, waiting if it is not in
yet. The commands run niced, so they take only the time the tests leave.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator import lab
from orchestrator.config import PROJECT_ROOT
from orchestrator.lab import image
from orchestrator.lab.paths import lab_paths
from tests.installed import installed_venv
from tests.venv_tools import BIN, tools_env

NICE = 10


@dataclass
class Check:
    """One command, run once per session; its output is read back by the test that needs it."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _process: subprocess.Popen[str] | None = None
    _output: IO[str] | None = None  # a file, not a pipe: nothing blocks while nobody reads

    def start(self) -> None:
        if self._process is None:
            self._output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read by result())
            self._process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, text=True, stdout=self._output,
                stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(NICE),
                start_new_session=True)  # its own group: stop() ends its children too

    @property
    def started(self) -> bool:
        return self._process is not None

    def result(self, timeout: float = 900) -> tuple[int, str]:
        """Exit code and combined output; starts the command now if nobody did."""
        self.start()
        assert self._process is not None and self._output is not None
        code = self._process.wait(timeout=timeout)
        self._output.seek(0)
        return code, self._output.read()

    def stop(self) -> None:
        """End it and its children (debootstrap's) if the session ends before its test."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()


CHECKS = {
    "mypy": Check((str(BIN / "mypy"),), PROJECT_ROOT),
    "ansible-lint": Check((str(BIN / "ansible-lint"), "--profile", "production"),
                          PROJECT_ROOT / "ansible", tools_env()),  # it calls ansible-config
}
# the test modules that read each check, as they appear in a test's node id
NEEDED_BY = {"mypy": "tests/test_code_quality.py::test_mypy_is_clean",
             "ansible-lint": "tests/test_ansible_lint.py::test_ansible_dir_passes"}


LAB_IMAGE = Check((sys.executable, "-c", "from orchestrator.lab.image import ensure_image; "
                   "from orchestrator.lab.paths import lab_paths; ensure_image(lab_paths())"),
                  PROJECT_ROOT)


def _lab_image_build_needed() -> bool:
    """The image is missing or out of date, and no lab host runs from it: a lab that is up
    keeps its image until `lab down`, as `lab up` does (its hosts' root is that folder)."""
    if image.cached_version(lab_paths().image_dir) == image.image_version():
        return False
    return not any(host.running for host in lab.status().hosts)


def lab_image_ready() -> tuple[int, str]:
    """Wait for the background image build if one started; (0, "") when none was needed."""
    if LAB_IMAGE.started:
        return LAB_IMAGE.result(timeout=1800)
    return 0, ""


@dataclass
class InstalledVenv:
    """selfheal's wheel installed into a clean venv outside the checkout, built in a thread."""

    _work: Path | None = None
    _future: Future[Path] | None = None
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    def start(self) -> None:
        if self._future is None:
            self._work = Path(tempfile.mkdtemp(prefix="selfheal-installed-"))
            self._future = self._pool.submit(installed_venv, self._work)

    def result(self) -> Path:
        self.start()
        assert self._future is not None
        return self._future.result(timeout=1800)

    def stop(self) -> None:
        """Remove the venv once built; a session cut short does not wait for the build (its
        folder stays under the temporary directory)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._work is not None and self._future is not None and self._future.done():
            shutil.rmtree(self._work, ignore_errors=True)


INSTALLED = InstalledVenv()
INSTALLED_BY = ("tests/integration/test_install.py", "tests/e2e/test_installed_heal.py")


def start_for(nodeids: list[str]) -> None:
    """Start what the selected tests will ask for."""
    for name, needed_by in NEEDED_BY.items():
        if any(n.startswith(needed_by) for n in nodeids):
            CHECKS[name].start()
    if any(n.startswith(INSTALLED_BY) for n in nodeids):
        INSTALLED.start()
    if any(n.startswith("tests/e2e/") for n in nodeids) and _lab_image_build_needed():
        LAB_IMAGE.start()


def stop_all() -> None:
    for check in (*CHECKS.values(), LAB_IMAGE):
        check.stop()
    INSTALLED.stop()
