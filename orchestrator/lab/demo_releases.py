"""The demo app deployed as releases, as deploy tools do, so a bad deploy can be rolled back.

Called by ``image._customise`` (lays out the image) and ``faults`` (the ``memory_leak`` fault
deploys v2, its ``clear`` goes back to v1). In the image:

    /usr/local/share/selfheal-demo/<release>/   the builds: selfheal_demo.py + release.conf
    /opt/selfheal-demo/releases/v1/             deployed at image build time
    /opt/selfheal-demo/current -> releases/v1   what selfheal-demo.service runs
    /usr/local/sbin/selfheal-demo-deploy REL    copy the build, switch `current`, restart

Release v1 is healthy; v2 (``files/release-v2.conf``) leaks memory. Release folders are named so
that their names sort in deploy order, the convention ``release_rollback`` relies on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.lab.paths import DEMO_UNIT, FILES_DIR

RELEASES = ("v1", "v2")
FIRST = "v1"
LEAKY = "v2"
APP_DIR = "/opt/selfheal-demo"
BUILDS_DIR = "/usr/local/share/selfheal-demo"
DEPLOY = "/usr/local/sbin/selfheal-demo-deploy"
# release_rollback's default snapshot_dir on a host (ansible/roles/release_rollback/defaults)
ROLLBACK_SNAPSHOTS = "/var/lib/selfheal/snapshots/release_rollback"


def customise(root: Path) -> None:
    """Lay the builds, the first release, ``current`` and the deploy script into the image."""
    for release in RELEASES:
        build = root / BUILDS_DIR.lstrip("/") / release
        build.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES_DIR / "selfheal_demo.py", build / "selfheal_demo.py")
        shutil.copyfile(FILES_DIR / f"release-{release}.conf", build / "release.conf")
    app = root / APP_DIR.lstrip("/")
    (app / "releases").mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / BUILDS_DIR.lstrip("/") / FIRST, app / "releases" / FIRST)
    (app / "current").symlink_to(f"{APP_DIR}/releases/{FIRST}")
    deploy = root / DEPLOY.lstrip("/")
    deploy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FILES_DIR / "selfheal-demo-deploy", deploy)
    deploy.chmod(0o755)


def deploy_command(release: str) -> tuple[str, ...]:
    """The remote command that deploys ``release`` (copy, switch ``current``, restart)."""
    return (DEPLOY, release)


def undeploy_command(release: str) -> tuple[str, ...]:
    """Back to the first release, the way the image had it: ``release`` removed, unit restarted,
    and release_rollback's snapshot of an earlier heal gone (a link made within a minute of it
    would pass for the role's own, and the next test would find "already rolled back").

    Prometheus keeps both releases' series, so "a release changed in the last 24 h" stays true.
    """
    return (
        "sh", "-c",
        f"ln -sfn {APP_DIR}/releases/{FIRST} {APP_DIR}/current.tmp && "
        f"mv -T {APP_DIR}/current.tmp {APP_DIR}/current && "
        f"rm -rf {APP_DIR}/releases/{release} {ROLLBACK_SNAPSHOTS} && "
        f"systemctl restart {DEMO_UNIT}",
    )
