"""Builds and caches the Debian 12 root every lab host boots from.

Called by ``orchestrator.lab.fleet.up`` through ``ensure_image``. The image is built once with
``debootstrap`` from the machine's own Debian mirror (read from /etc/apt/sources.list.d at run
time), customised without a chroot (demo app installed and enabled, colliding or slow units
masked, /etc/hostname and the stock ssh host keys removed), stamped with a version marker and
only then renamed into place, so a half-built image is never booted. A changed package list,
changed lab files or a changed build recipe change the version and trigger a rebuild.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from orchestrator.errors import ConfigError, PermanentError
from orchestrator.lab import (
    demo_releases,
    services_postgres,
    services_process,
    services_web,
)
from orchestrator.lab.paths import FILES_DIR, LabPaths
from orchestrator.lab.progress import ProgressFn, report

log = logging.getLogger(__name__)

SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "prometheus-node-exporter",
    "python3-prometheus-client",
    "curl",
    "ca-certificates",
    "procps",
    "util-linux",
    *services_postgres.PACKAGES,
    *services_web.PACKAGES,
    *services_process.PACKAGES,
)
# Units that would bind every address, poll hardware or slow the boot of a throw-away host.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-pstore.service",
    "getty@tty1.service",
    "console-getty.service",
    "ssh.socket",
    "certbot.timer",  # renews on its own twice a day: the lab's renewals are the role's
)
# Lab services with their own packages and image customisation (orchestrator/lab/services_*.py).
SERVICES = (services_postgres, services_process, services_web)
# Bump when the customisation below changes in a way the version hash cannot see.
RECIPE = 1
MARKER = "etc/selfheal-lab-image.json"
SOURCES_DIR = Path("/etc/apt/sources.list.d")


def mirror(sources_dir: Path = SOURCES_DIR) -> str:
    """The ``URIs:`` of the deb822 stanza that serves the ``bookworm`` suite on this machine."""
    for path in sorted(sources_dir.glob("*.sources")):
        for stanza in path.read_text(encoding="utf-8").split("\n\n"):
            fields = _deb822_fields(stanza)
            types, suites = fields.get("types", "").split(), fields.get("suites", "").split()
            uris = fields.get("uris", "").split()
            if "deb" in types and SUITE in suites and uris:
                return uris[0]
    raise ConfigError(
        f"no apt source for the {SUITE!r} suite in {sources_dir}/*.sources; "
        "add a deb822 stanza with 'Suites: bookworm' and its 'URIs:' line"
    )


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def image_version() -> str:
    """A hash of everything that goes into the image: suite, packages, lab files, recipe, and
    the source of each lab service module (their ``customise`` writes into the image)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([SUITE, PACKAGES, MASKED_UNITS, RECIPE]).encode())
    for module in (*SERVICES, demo_releases):
        digest.update(Path(module.__file__ or "").read_bytes())
    for path in sorted(FILES_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_version(image_dir: Path) -> str | None:
    """The version stamped into an image, or None when there is no complete image."""
    try:
        return str(json.loads((image_dir / MARKER).read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_image(paths: LabPaths, progress: ProgressFn | None = None, rebuild: bool = True) -> Path:
    """The image directory, built first when it is missing or its version is out of date.

    With ``rebuild=False`` (hosts are running from the image) an out-of-date image is kept.
    """
    version = image_version()
    cached = cached_version(paths.image_dir)
    if cached == version or (cached and not rebuild):
        if cached != version:
            log.warning(
                "image %s is out of date (want %s); rebuild after lab down", cached, version
            )
        report(progress, f"image {cached} cached at {paths.image_dir}", 1.0)
        return paths.image_dir
    paths.cache_dir.mkdir(parents=True, exist_ok=True)
    with (paths.cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be finishing: wait for it
        if cached_version(paths.image_dir) != version:
            _build(paths, version, progress)
    return paths.image_dir


def _build(paths: LabPaths, version: str, progress: ProgressFn | None) -> None:
    for stale in (*paths.cache_dir.glob("rootfs.build-*"), *paths.cache_dir.glob("rootfs.old-*")):
        log.info("removing stale image build %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if shutil.which("debootstrap") is None:
        raise PermanentError("debootstrap is not installed: apt-get install -y debootstrap")
    started = time.monotonic()
    build_dir = paths.cache_dir / f"rootfs.build-{os.getpid()}"
    try:
        _debootstrap(build_dir, paths.cache_dir / "debootstrap.log", progress)
        report(progress, "customising image", 0.98)
        _customise(build_dir)
        (build_dir / MARKER).write_text(
            json.dumps({"version": version, "suite": SUITE, "packages": PACKAGES}) + "\n",
            encoding="utf-8",
        )
        _swap_into_place(build_dir, paths.image_dir)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    log.info("built lab image %s in %.1f s", version, time.monotonic() - started)
    report(progress, f"image {version} built in {time.monotonic() - started:.0f} s", 1.0)


def _debootstrap(target: Path, log_file: Path, progress: ProgressFn | None) -> None:
    source = mirror()
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        source,
    ]
    report(progress, f"debootstrap {SUITE} from {source}", 0.0)
    packages: set[str] = set()
    lines = 0
    done = 0.0
    with (
        log_file.open("w", encoding="utf-8") as log_out,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log_out.write(line)
            lines += 1
            words = line.split()
            if len(words) >= 3 and words[1] in ("Retrieving", "Validating"):
                packages.add(words[2])
            # about five lines per package: retrieve, validate, extract, unpack, configure
            done = max(done, min(0.97, lines / (5 * len(packages) + 30)))
            report(progress, line.strip()[:70], done)
    if proc.returncode != 0:
        raise PermanentError(f"debootstrap failed with exit code {proc.returncode}; see {log_file}")


def _customise(root: Path) -> None:
    (root / "etc/hostname").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    shutil.copyfile(FILES_DIR / "selfheal_lab_fill.py", root / "usr/local/bin/selfheal_lab_fill.py")
    (root / "usr/local/bin/selfheal_lab_fill.py").chmod(0o755)  # the fault injector
    demo_releases.customise(root)
    shutil.copyfile(
        FILES_DIR / "selfheal-demo.service", root / "etc/systemd/system/selfheal-demo.service"
    )
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    _symlink("/etc/systemd/system/selfheal-demo.service", wants / "selfheal-demo.service")
    for unit in MASKED_UNITS:
        for link in (root / "etc/systemd/system").glob(f"*.wants/{unit}"):
            link.unlink()
        _symlink("/dev/null", root / "etc/systemd/system" / unit)
    # mount points for the per-host files bound in read-only at boot
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    for point in (
        "root/.ssh/authorized_keys",
        "etc/ssh/sshd_config.d/lab.conf",
        "etc/ssh/ssh_host_ed25519_key",
        "etc/ssh/ssh_host_ed25519_key.pub",
        "etc/default/selfheal-demo",
        services_process.DEFAULTS_PATH.lstrip("/"),
    ):
        (root / point).touch()
    (root / "etc/selfheal-lab").mkdir(exist_ok=True)
    (root / "srv").mkdir(exist_ok=True)
    for service in SERVICES:
        service.customise(root)


def _symlink(target: str, link: Path) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def _swap_into_place(build_dir: Path, image_dir: Path) -> None:
    old = image_dir.with_name(f"rootfs.old-{os.getpid()}")
    if image_dir.exists():
        image_dir.rename(old)
    build_dir.rename(image_dir)
    shutil.rmtree(old, ignore_errors=True)
