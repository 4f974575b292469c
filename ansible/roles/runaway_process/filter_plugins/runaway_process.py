"""Pick the process that burns the most CPU on a host from two samples of its /proc.

Used by the ``runaway_process`` role (``runaway_process_pick`` filter) on the controller, on the
text the role's two sampling tasks read from the host; pure, so ``tests/unit/roles`` test it on
crafted samples. Each sample is ``grep -H '' /proc/uptime /proc/PID/stat [/proc/PID/cgroup]``
output: one ``/proc/...:LINE`` per line. CPU use is the change of utime + stime between the
samples over the change of uptime, so a process that started burning a second ago ranks above
an old one with a high lifetime average (which is what ``ps``'s %CPU is). A process seen in
only one sample (the sampling commands themselves, Ansible's own module runs) is not ranked.

The decision, in this order: nothing above ``min_cpu_percent`` -> ``none``; PID 1, a protected
command (sshd) or a process of a protected unit -> ``refuse``; a process of a ``.service`` unit
-> ``restart_unit``; anything else (a scope, a slice, no unit at all) -> ``action`` (renice or
stop). The top process is never skipped for the next one: a refused top process refuses.
"""

from __future__ import annotations

import fnmatch
from typing import Any

USER_HZ = 100  # clock ticks per second in /proc/PID/stat on every Linux build (sysconf CLK_TCK)
UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".timer", ".slice")
ACTIONS = ("renice", "stop")


def _parse(sample: str) -> tuple[float, dict[int, dict[str, Any]]]:
    """(uptime seconds, pid -> {comm, ppid, ticks, nice, starttime, cgroup lines})."""
    uptime = None
    procs: dict[int, dict[str, Any]] = {}
    for line in sample.splitlines():
        path, sep, text = line.partition(":")
        if not sep:
            continue
        if path == "/proc/uptime":
            uptime = float(text.split()[0])
            continue
        parts = path.split("/")
        if len(parts) != 4 or not parts[2].isdigit():
            continue
        pid, kind = int(parts[2]), parts[3]
        entry = procs.setdefault(pid, {"pid": pid, "cgroup": []})
        if kind == "stat":
            comm = text[text.index("(") + 1:text.rindex(")")]
            rest = text[text.rindex(")") + 2:].split()
            # rest[0] is field 3 (state) of proc(5): field N is rest[N - 3]
            entry.update(comm=comm, ppid=int(rest[1]), ticks=int(rest[11]) + int(rest[12]),
                         nice=int(rest[16]), starttime=int(rest[19]))
        elif kind == "cgroup":
            entry["cgroup"].append(text)
    if uptime is None:
        raise ValueError("the sample has no /proc/uptime line; was it read with grep -H?")
    return uptime, {pid: p for pid, p in procs.items() if "ticks" in p}


def unit_of(cgroup_lines: list[str]) -> tuple[str, str]:
    """(systemd unit or "", cgroup path) from /proc/PID/cgroup lines.

    systemd's own hierarchy (``name=systemd``, hybrid mode) wins over the unified one (``0::``).
    The unit is the deepest path component with a unit suffix other than ``.slice`` (a process
    directly in a slice, or in the root cgroup, belongs to no unit).
    """
    paths = {}
    for line in cgroup_lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "name=systemd" or (hid == "0" and controllers == ""):
            paths[controllers] = path
    path = paths.get("name=systemd", paths.get("", ""))
    unit = ""
    for part in path.split("/"):
        if part.endswith(UNIT_SUFFIXES) and not part.endswith(".slice"):
            unit = part
    return unit, path


def _protected(unit: str, patterns: list[str]) -> str | None:
    """The pattern ``unit`` matches (a pattern without a suffix is read as NAME.service)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(unit, pattern) or fnmatch.fnmatchcase(unit, f"{pattern}.service"):
            return pattern
    return None


def runaway_process_pick(first: str, second: str, protected_units: list[str],
                         protected_commands: list[str], min_cpu_percent: float | str,
                         action: str) -> dict[str, Any]:
    """The top CPU process between the two samples and what to do about it."""
    if action not in ACTIONS:
        raise ValueError(f"runaway_process_action must be one of {ACTIONS}, not {action!r}")
    up1, before = _parse(first)
    up2, after = _parse(second)
    elapsed = up2 - up1
    if elapsed <= 0:
        raise ValueError(f"the second sample is not later than the first ({up1} -> {up2})")
    ranked = []
    for pid, now in after.items():
        then = before.get(pid)
        if then is None or then["starttime"] != now["starttime"] or pid == 2 or now["ppid"] == 2:
            continue  # new, or a reused PID, or a kernel thread
        cpu = (now["ticks"] - then["ticks"]) / USER_HZ / elapsed * 100
        unit, path = unit_of(now["cgroup"])
        ranked.append({**{k: now[k] for k in ("pid", "ppid", "comm", "nice", "starttime")},
                       "cpu_percent": round(cpu, 1), "unit": unit, "cgroup": path})
    ranked.sort(key=lambda p: p["cpu_percent"], reverse=True)
    top5 = [f"{p['pid']} {p['comm']} {p['cpu_percent']}% {p['unit'] or p['cgroup']}"
            for p in ranked[:5]]
    base = {"top": top5, "sampled_s": round(elapsed, 2)}
    if not ranked or ranked[0]["cpu_percent"] < float(min_cpu_percent):
        best = ranked[0]["cpu_percent"] if ranked else 0.0
        return {**base, "decision": "none", "reason": f"no process above {min_cpu_percent}% "
                f"CPU (the top one used {best}%): nothing to do"}
    top = ranked[0]
    who = f"process {top['pid']} ({top['comm']}, {top['cpu_percent']}% CPU"
    who += f", unit {top['unit']})" if top["unit"] else ", no unit)"
    if top["pid"] == 1:
        return {**base, **top, "decision": "refuse",
                "reason": f"the top CPU process is PID 1 ({top['comm']}): never touched"}
    if top["comm"] in protected_commands:
        return {**base, **top, "decision": "refuse",
                "reason": f"the top CPU process is {who}, a protected command "
                          f"(runaway_process_protected_commands): never touched"}
    pattern = _protected(top["unit"], protected_units) if top["unit"] else None
    if pattern is not None:
        return {**base, **top, "decision": "refuse",
                "reason": f"the top CPU process is {who}, of a protected unit ({pattern!r} in "
                          f"runaway_process_protected_units): never touched"}
    if top["unit"].endswith(".service"):
        return {**base, **top, "decision": "restart_unit", "reason": f"{who}: restart its unit"}
    return {**base, **top, "decision": action, "reason": f"{who}: {action} it"}


class FilterModule:
    """Ansible's entry point for the role's filter plugins."""

    def filters(self) -> dict[str, Any]:
        return {"runaway_process_pick": runaway_process_pick}
