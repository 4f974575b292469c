#!/usr/bin/python3
"""Pick the process that burns the most CPU on a host: the runaway_process role's choice.

One module call on the host instead of two sampling commands, a wait, a filter on the
controller and a ``ps`` (each task a round trip over SSH; and a role's filter_plugins/ do not
load when the role runs from the selfheal.remediation collection, where its library/ becomes
plugins/modules). It reads /proc twice, ``sample_s`` apart (``/proc/uptime`` and every
``/proc/PID/stat``, plus every ``/proc/PID/cgroup`` the second time), decides, and reads the
chosen process's command line for the role's snapshot. It only reads: check mode runs it the
same way, and it never reports a change. ``pick`` is pure, so tests/unit/roles feed it crafted
samples; a sample maps each file's path to its text.

CPU use is the change of utime + stime between the samples over the change of uptime, so a
process that started burning a second ago ranks above an old one with a high lifetime average
(which is what ``ps``'s %CPU is). A process seen in only one sample is not ranked, nor is this
module's own process.

The decision, in this order: nothing above ``min_cpu_percent`` -> ``none``; PID 1, a protected
command (sshd) or a process of a protected unit -> ``refuse``; a process of a ``.service`` unit
-> ``restart_unit``; anything else (a scope, a slice, no unit at all) -> ``action`` (renice or
stop). The top process is never skipped for the next one: a refused top process refuses.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: runaway_process_pick
short_description: Find the top CPU process between two samples of /proc and decide what to do
description: The runaway_process role's choice; see the role's README. Reads only.
options:
  sample_s: {type: float, required: true, description: Seconds between the two samples.}
  protected_units: {type: list, elements: str, required: true, description: Units never touched.}
  protected_commands: {type: list, elements: str, required: true, description: Commands (comm).}
  min_cpu_percent: {type: float, required: true, description: Share of one core that counts.}
  action: {type: str, required: true, description: renice or stop, for a process of no service.}
"""

USER_HZ = 100  # clock ticks per second in /proc/PID/stat on every Linux build (sysconf CLK_TCK)
UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".timer", ".slice")
ACTIONS = ("renice", "stop")


def read_sample(with_cgroup: bool, proc: str = "/proc") -> dict[str, str]:
    """``/proc/uptime`` and each process's ``stat`` (and ``cgroup``), keyed by their path."""
    sample = {"/proc/uptime": _read(os.path.join(proc, "uptime"))}
    kinds = ("stat", "cgroup") if with_cgroup else ("stat",)
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        for kind in kinds:
            try:
                sample[f"/proc/{name}/{kind}"] = _read(os.path.join(proc, name, kind))
            except OSError:
                break  # the process ended while /proc was read: it is simply missing
    return sample


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as stream:
        return stream.read()


def _parse(sample: Mapping[str, str]) -> tuple[float, dict[int, dict[str, Any]]]:
    """(uptime seconds, pid -> {comm, ppid, ticks, nice, starttime, cgroup lines})."""
    if "/proc/uptime" not in sample:
        raise ValueError("the sample has no /proc/uptime; read it with read_sample()")
    uptime = float(sample["/proc/uptime"].split()[0])
    procs: dict[int, dict[str, Any]] = {}
    for path, text in sample.items():
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
            entry["cgroup"] = text.splitlines()
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


def pick(first: Mapping[str, str], second: Mapping[str, str], protected_units: list[str],
         protected_commands: list[str], min_cpu_percent: float, action: str,
         exclude: Iterable[int] = ()) -> dict[str, Any]:
    """The top CPU process between the two samples (``exclude``: PIDs never ranked) and what to
    do about it."""
    if action not in ACTIONS:
        raise ValueError(f"runaway_process_action must be one of {ACTIONS}, not {action!r}")
    up1, before = _parse(first)
    up2, after = _parse(second)
    elapsed = up2 - up1
    if elapsed <= 0:
        raise ValueError(f"the second sample is not later than the first ({up1} -> {up2})")
    skip = set(exclude)
    ranked = []
    for pid, now in after.items():
        then = before.get(pid)
        if (then is None or then["starttime"] != now["starttime"] or pid == 2 or now["ppid"] == 2
                or pid in skip):
            continue  # new, or a reused PID, or a kernel thread, or this module
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
        return {**base, "decision": "none", "reason": f"no process above "
                f"{float(min_cpu_percent):g}% CPU (the top one used {best}%): nothing to do"}
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


def cmdline_of(pid: int, comm: str, proc: str = "/proc") -> str:
    """The command line as ``ps -ww -o args=`` shows it, never cut ("" once it has ended)."""
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as stream:
            raw = stream.read()
    except OSError:
        return ""
    args = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", errors="replace")
    return args or f"[{comm}]"  # a kernel thread or a zombie has none


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sample_s": {"type": "float", "required": True},
            "protected_units": {"type": "list", "elements": "str", "required": True},
            "protected_commands": {"type": "list", "elements": "str", "required": True},
            "min_cpu_percent": {"type": "float", "required": True},
            "action": {"type": "str", "required": True},
        },
        supports_check_mode=True,  # it only reads /proc
    )
    p = module.params
    if p["sample_s"] <= 0:
        module.fail_json(msg=f"runaway_process_sample_s must be above 0, not {p['sample_s']}")
    try:
        first = read_sample(with_cgroup=False)
        time.sleep(p["sample_s"])
        second = read_sample(with_cgroup=True)
        target = pick(first, second, p["protected_units"], p["protected_commands"],
                      p["min_cpu_percent"], p["action"], exclude=[os.getpid()])
        if "pid" in target:  # for the snapshot, read here rather than in one more task
            target["cmdline"] = cmdline_of(target["pid"], target["comm"])
    except (OSError, ValueError) as failed:
        module.fail_json(msg=str(failed))
    else:
        module.exit_json(changed=False, target=target)


if __name__ == "__main__":
    main()
