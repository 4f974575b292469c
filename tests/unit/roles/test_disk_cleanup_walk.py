"""The disk_cleanup module's changes between its listing and its action (library/disk_cleanup.py).

The role test (tests/integration/test_disk_cleanup_role.py) checks what a run chooses; these
load the module from the role folder and swap things under it after the listing, as a hostile
or merely busy host could: a folder replaced by a symlink to outside, a file replaced by another
(a new inode), a file that gained a hard link. None of them may lead to a change outside the
configured folder or to a file other than the one listed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROLES_DIR

DAY = 86400.0


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "disk_cleanup_module", ROLES_DIR / "disk_cleanup" / "library" / "disk_cleanup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MOD = _module()


def old_file(path: Path, age_days: float = 10, data: bytes = b"line\n" * 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


def listed(root: Path, pattern: str, checksum: bool = False) -> dict[str, object]:
    (entry,) = MOD.listing(str(root), [pattern], 7 * DAY, time.time())
    return dict(MOD.checksummed([entry])[0] if checksum else entry)


def test_a_folder_swapped_for_a_symlink_after_the_listing_is_never_walked(tmp_path: Path) -> None:
    root, outside = tmp_path / "log", tmp_path / "outside"
    old_file(root / "shop" / "app.log.9")
    entry = listed(root, "*.log.[0-9]*")
    victim = old_file(outside / "app.log.9")  # same name, outside the folder
    (root / "shop").rename(tmp_path / "moved")
    (root / "shop").symlink_to(outside)
    with pytest.raises(OSError):
        MOD.delete([str(root)], entry, 7 * DAY)
    assert victim.exists()


def test_a_file_replaced_after_the_listing_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "log"
    first = old_file(root / "app.log.9")
    entry = listed(root, "*.log.[0-9]*")
    first.rename(tmp_path / "kept")  # kept alive, so the new file cannot reuse its inode
    again = old_file(root / "app.log.9", data=b"someone else's\n")
    assert not MOD.delete([str(root)], entry, 7 * DAY)
    assert again.read_bytes() == b"someone else's\n"


def test_a_file_that_gained_a_link_or_became_young_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "log"
    linked = old_file(root / "a.log.9")
    young = old_file(root / "b.log.9")
    entries = {Path(str(e["path"])).name: dict(e) for e in MOD.listing(
        str(root), ["*.log.[0-9]*"], 7 * DAY, time.time())}
    os.link(linked, tmp_path / "elsewhere")
    os.utime(young, None)  # written again just now
    assert not MOD.delete([str(root)], entries["a.log.9"], 7 * DAY)
    assert not MOD.delete([str(root)], entries["b.log.9"], 7 * DAY)
    assert linked.exists() and young.exists()


def test_a_path_outside_the_configured_folders_is_refused(tmp_path: Path) -> None:
    old_file(tmp_path / "other" / "app.log.9")
    entry = listed(tmp_path / "other", "*.log.[0-9]*")
    with pytest.raises(OSError, match="outside the configured folders"):
        MOD.delete([str(tmp_path / "log")], entry, 7 * DAY)


def test_compress_keeps_mode_and_mtime_and_reads_back_before_the_original_goes(
        tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = old_file(root / "app.log.1", data=b"GET /cart 200\n" * 5000)
    log.chmod(0o640)
    entry = listed(root, "*.log.[0-9]", checksum=True)
    assert MOD.compress([str(root)], entry)
    packed = root / "app.log.1.gz"
    assert not log.exists()
    assert hashlib.sha256(gzip.decompress(packed.read_bytes())).hexdigest() == entry["checksum"]
    assert packed.stat().st_mode & 0o777 == 0o640
    assert abs(packed.stat().st_mtime - float(str(entry["mtime"]))) < 1


def test_a_log_changed_after_its_checksum_keeps_its_original(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = old_file(root / "app.log.1")
    entry = listed(root, "*.log.[0-9]", checksum=True)
    with log.open("ab") as out:  # still written (same inode): the .gz would not match
        out.write(b"late line\n")
    with pytest.raises(OSError, match="did not read back"):
        MOD.compress([str(root)], entry)
    assert log.exists() and not (root / "app.log.1.gz").exists()


def test_only_the_files_chosen_for_compression_are_read_for_their_checksum(
        tmp_path: Path) -> None:
    """An open log or one with a second link is never compressed, so it is never read: on a
    host with many large open rotated logs, reading them all cost the cleanup its time."""
    root = tmp_path / "log"
    free = old_file(root / "a.log.1", age_days=1)
    held = old_file(root / "b.log.1", age_days=1)
    linked = old_file(root / "c.log.1", age_days=1)
    os.link(linked, tmp_path / "elsewhere")
    found = MOD.listing(str(root), ["*.log.[0-9]"], 3600, time.time())
    assert all("checksum" not in f for f in found)
    picked = MOD.checksummed(MOD.chosen(found, free.stat().st_dev, {str(held)}, set(),
                                        ("path", "size", "mtime", "inode", "mode"), 10))
    assert [p["path"] for p in picked] == [str(free)]
    assert picked[0]["checksum"] == hashlib.sha256(free.read_bytes()).hexdigest()
