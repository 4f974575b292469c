#!/usr/bin/python3
"""Free space on one filesystem within configured folders: the disk_cleanup role's one remote step.

One module call instead of a dozen tasks (each a round trip over SSH): list old rotated logs and
archives (to delete) and younger rotated logs (to gzip) in the configured folders, write the
manifest of both before anything changes (rollback.yml restores from it), make the changes, vacuum
journald when it lives on that filesystem, and report the bytes freed.

Safety, as the tasks it replaced: a configured folder that is, or is reached through, a symlink
is skipped (realpath); the listing never follows a symlink; only regular files with one link, on
the mount point's filesystem, not held open by any process, are chosen. Each change walks from
the configured folder to the file one directory at a time with O_NOFOLLOW (fd-relative, as GNU
find -P -xdev does) and re-checks the file (same inode, still one link, still old enough) just
before it acts, so a folder swapped for a symlink between the listing and the change cannot lead
it outside the folder. A compressed log's original goes only once its .gz reads back to the
same sha256. Check mode lists and reports, and changes nothing (not even the manifest).
"""

from __future__ import annotations

import datetime
import fnmatch
import gzip
import hashlib
import json
import os
import stat
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: disk_cleanup
short_description: Delete old rotated logs and archives, gzip younger ones, within folders only
description: The disk_cleanup role's one remote step; see the role's README.
options:
  mountpoint: {type: str, required: true, description: The full filesystem's mount point.}
  paths: {type: list, elements: str, required: true, description: Folders it may touch.}
  delete_patterns: {type: list, elements: str, required: true, description: Names to delete.}
  min_age_days: {type: int, required: true, description: Delete only files this old.}
  compress_patterns: {type: list, elements: str, required: true, description: Names to gzip.}
  compress_min_age_hours: {type: int, required: true, description: Gzip only files this old.}
  max_files: {type: int, required: true, description: At most this many of each per run.}
  journal_max_size: {type: str, required: true, description: journalctl --vacuum-size; "" never.}
  journal_dir: {type: str, required: true, description: Where the journal lives.}
  snapshot_dir: {type: str, required: true, description: Where the manifest is written.}
"""

CHUNK = 1 << 20


def listing(root: str, patterns: list[str], min_age_s: float, now: float
            ) -> list[dict[str, object]]:
    """Regular files under ``root`` (symlinks never followed) whose name matches a pattern and
    whose mtime is at least ``min_age_s`` old."""
    found = []
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone since the walk listed it
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age_s:
                continue
            entry: dict[str, object] = {"path": path, "size": st.st_size, "mtime": st.st_mtime,
                                        "inode": st.st_ino, "dev": st.st_dev,
                                        "nlink": st.st_nlink,
                                        "mode": f"{stat.S_IMODE(st.st_mode):04o}"}
            found.append(entry)
    return found


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def open_files() -> set[str]:
    """Every file some process holds open (the targets of /proc/PID/fd/*)."""
    held = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # processes come and go while /proc is read
        for fd in fds:
            try:
                held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
    return held


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def chosen(found: list[dict[str, object]], dev: int, held: set[str], exclude: set[str],
           keys: tuple[str, ...], limit: int) -> list[dict[str, object]]:
    """The files a run may change, oldest first, at most ``limit``, with only ``keys``."""
    ok = [f for f in found
          if "\t" not in str(f["path"]) and "\n" not in str(f["path"])
          and f["dev"] == dev and f["nlink"] == 1
          and f["path"] not in held and f["path"] not in exclude]
    ok.sort(key=lambda f: float(str(f["mtime"])))
    return [{k: f[k] for k in keys if k in f} for f in ok[:limit]]


def checksummed(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    """``entries`` with the sha256 their .gz must read back to, read only for the files chosen
    (open, multi-link and surplus files are never read); a file gone since is dropped."""
    out = []
    for entry in entries:
        try:
            out.append({**entry, "checksum": sha256_of(str(entry["path"]))})
        except OSError:
            continue
    return out


class Walk:
    """A file reached from a configured folder one directory at a time, never via a symlink."""

    def __init__(self, roots: list[str], path: str) -> None:
        root = next((r for r in roots if path.startswith(r.rstrip("/") + "/")), None)
        if root is None:
            raise OSError(f"{path} is outside the configured folders")
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.dev = os.fstat(self.fd).st_dev
        *folders, self.name = path[len(root.rstrip("/")) + 1:].split("/")
        for folder in folders:
            nxt = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.fd)
            os.close(self.fd)
            self.fd = nxt
            if os.fstat(self.fd).st_dev != self.dev:
                raise OSError(f"{path} is on another filesystem (-xdev)")

    def same(self, entry: dict[str, object], min_mtime_age_s: float | None = None) -> bool:
        """The file is still the listed one: same inode, regular, one link, old enough."""
        try:
            st = os.stat(self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (stat.S_ISREG(st.st_mode) and st.st_ino == entry["inode"] and st.st_nlink == 1
                and st.st_dev == self.dev
                and (min_mtime_age_s is None or time.time() - st.st_mtime > min_mtime_age_s))

    def close(self) -> None:
        os.close(self.fd)


def delete(roots: list[str], entry: dict[str, object], min_age_s: float) -> bool:
    walk = Walk(roots, str(entry["path"]))
    try:
        if not walk.same(entry, min_age_s - 60):  # find -mmin +(days * 1440 - 1)
            return False
        os.unlink(walk.name, dir_fd=walk.fd)
        return True
    finally:
        walk.close()


def compress(roots: list[str], entry: dict[str, object]) -> bool:
    """gzip the file beside itself (mode, owner and mtime kept, as gzip -k does), read the .gz
    back, and remove the original only when it decompresses to the recorded sha256."""
    walk = Walk(roots, str(entry["path"]))
    gz = walk.name + ".gz"
    try:
        if not walk.same(entry):
            return False
        src = os.open(walk.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=walk.fd)
        try:
            st = os.fstat(src)
            dst = os.open(gz, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                          stat.S_IMODE(st.st_mode), dir_fd=walk.fd)
            try:
                with os.fdopen(os.dup(src), "rb") as plain, os.fdopen(os.dup(dst), "wb") as out, \
                        gzip.GzipFile(walk.name, "wb", fileobj=out, mtime=int(st.st_mtime)) as z:
                    for block in iter(lambda: plain.read(CHUNK), b""):
                        z.write(block)
                os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        digest = hashlib.sha256()
        reader = os.open(gz, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=walk.fd)
        with os.fdopen(reader, "rb") as packed, gzip.GzipFile(fileobj=packed) as unz:
            for block in iter(lambda: unz.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != entry["checksum"] or not walk.same(entry):
            os.unlink(gz, dir_fd=walk.fd)
            raise OSError(f"{entry['path']}.gz did not read back to the original; kept the log")
        os.unlink(walk.name, dir_fd=walk.fd)
        return True
    finally:
        walk.close()


def write_manifest(folder: str, manifest: dict[str, object]) -> None:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = os.path.join(folder, ".manifest.json.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(manifest, out, indent=4, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, os.path.join(folder, "manifest.json"))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "mountpoint": {"type": "str", "required": True},
            "paths": {"type": "list", "elements": "str", "required": True},
            "delete_patterns": {"type": "list", "elements": "str", "required": True},
            "min_age_days": {"type": "int", "required": True},
            "compress_patterns": {"type": "list", "elements": "str", "required": True},
            "compress_min_age_hours": {"type": "int", "required": True},
            "max_files": {"type": "int", "required": True},
            "journal_max_size": {"type": "str", "required": True},
            "journal_dir": {"type": "str", "required": True},
            "snapshot_dir": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    mountpoint, snapshots = p["mountpoint"], p["snapshot_dir"]
    try:
        mount = os.lstat(mountpoint)
    except OSError:
        mount = None
    if mount is None or not stat.S_ISDIR(mount.st_mode):
        module.fail_json(msg=f"{mountpoint} is not a folder on this host")
        return
    if not check and os.path.exists(os.path.join(snapshots, "manifest.json")):
        # a rollback of this run must never undo an earlier one
        os.replace(os.path.join(snapshots, "manifest.json"),
                   os.path.join(snapshots, "manifest.previous.json"))
    configured = [path.rstrip("/") or "/" for path in p["paths"]]
    safe = [path for path in configured
            if os.path.isdir(path) and os.path.realpath(path) == path]
    before = free_bytes(mountpoint)
    now = time.time()
    min_age_s = p["min_age_days"] * 86400
    old = [f for root in safe for f in listing(root, p["delete_patterns"], min_age_s, now)]
    rotated = [f for root in safe for f in listing(root, p["compress_patterns"],
                                                    p["compress_min_age_hours"] * 3600, now)]
    held = open_files()
    old_paths = {str(f["path"]) for f in old}
    to_delete = chosen(old, mount.st_dev, held, set(), ("path", "size", "mtime", "inode"),
                       p["max_files"])
    to_compress = checksummed(chosen(rotated, mount.st_dev, held, old_paths,
                                     ("path", "size", "mtime", "inode", "mode"), p["max_files"]))
    left = sorted({str(f["path"]) for f in old + rotated} & held)
    changed = check and bool(to_delete or to_compress)  # check mode: what a run would change
    errors: list[str] = []
    deleted = deleted_bytes = compressed = 0
    skipped = [c for c in configured if c not in safe]
    if not check and (to_delete or to_compress):
        write_manifest(snapshots, {
            # timezone.utc, not datetime.UTC: hosts may run a Python older than 3.11
            "taken_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),  # noqa: UP017
            "mountpoint": mountpoint, "paths": safe, "skipped_paths": skipped,
            "open_files_left": left, "delete": to_delete, "compress": to_compress})
        changed = True
        for entry in to_delete:
            try:
                if delete(safe, entry, min_age_s):
                    deleted += 1
                    deleted_bytes += int(str(entry["size"]))
            except OSError as failed:
                errors.append(f"{entry['path']}: {failed}")
        for entry in to_compress:
            try:
                compressed += compress(safe, entry)
            except OSError as failed:
                errors.append(f"{entry['path']}: {failed}")
    journal = "not vacuumed"
    journal_here = (os.path.isdir(p["journal_dir"]) and not os.path.islink(p["journal_dir"])
                    and os.lstat(p["journal_dir"]).st_dev == mount.st_dev)
    if not check and p["journal_max_size"] and journal_here:
        rc, _out, err = module.run_command(
            ["journalctl", f"--vacuum-size={p['journal_max_size']}"])
        lines = err.strip().splitlines()
        journal = lines[-1] if lines else "vacuumed"
        if rc != 0:
            errors.append(f"journalctl --vacuum-size failed (rc {rc}): {err.strip()}")
        elif "freed 0B" not in err:
            changed = True
    report = {"mountpoint": mountpoint, "check_mode": check, "deleted": deleted,
              "deleted_bytes": deleted_bytes, "would_delete": len(to_delete),
              "would_delete_bytes": sum(int(str(f["size"])) for f in to_delete),
              "compressed": compressed, "would_compress": len(to_compress), "journal": journal,
              "left_open": left, "skipped_paths": skipped,
              "freed_bytes": free_bytes(mountpoint) - before}
    if errors:
        module.fail_json(msg="; ".join(errors), changed=changed, report=report)
    module.exit_json(changed=changed, report=report)


if __name__ == "__main__":
    main()
