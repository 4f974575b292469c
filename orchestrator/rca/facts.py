"""Host facts for the root-cause analysis, read by the read-only Ansible role ``diagnose``.

Called by ``rca.stage``. The role runs through the same ``AnsibleExecutor`` as every remediation
(explicit target, unsafe extra vars, host key checking, the widening checks), in its own phase
(``playbooks/diagnose.yml`` names the role itself, so nothing else can run there). Its outputs
are registered task results: ``collect`` takes them from the run's events in memory and strips
them before ansible-runner writes the event to disk, so raw journal lines (which may hold
secrets) never land in the run's artefacts. ``parse_facts`` (pure) masks and caps them and adds
selfheal's own hints (an OOM kill, a signal, a recent deploy) computed from the redacted lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import OutcomeStatus, Plan
from orchestrator.rca import mask
from orchestrator.rca.context import HostFacts

ROLE = "diagnose"
TASKS = ("processes", "memory", "disks", "failed units", "journal warnings", "unit journal",
         "mount usage", "database sessions", "kernel log", "recent changes", "package log",
         "release links")
TOP = 5
_OOM = re.compile(r"(?i)out of memory|oom-kill|oom_reaper|killed by the oom killer")
_KILLED = re.compile(r"code=killed, status=(\d+)/([A-Z]+)")
_EXITED = re.compile(r"code=exited, status=(\d+)")
_SEGV = re.compile(r"(?i)segfault|SIGSEGV|status=11/SEGV")
_DPKG = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (install|upgrade|remove|purge) "
                   r"(\S+) (\S+) (\S+)")
_PATH = re.compile(r"/[A-Za-z0-9._/@:+-]{1,200}")
_MOUNT = re.compile(r"/|(/[A-Za-z0-9._-]+)+")  # the catalog's pattern for a mount point label
_VERSION = re.compile(r"[A-Za-z0-9.+:~-]{1,64}")


def diagnose_plan(host: str, unit: str, minutes: int, mountpoint: str = "") -> Plan:
    """The read-only role bound to one host: a plan only in shape (no verify, no rollback)."""
    return Plan(fault="diagnose", remediation=ROLE, role=ROLE, targets=(host,),
                params={"diagnose_unit": mask.unit(unit) if unit else "",
                        "diagnose_mountpoint": mountpoint if _MOUNT.fullmatch(mountpoint) else "",
                        "diagnose_journal_minutes": int(minutes)},
                risk_tier=1, cooldown_s=0.0, check_first=False, verify_signal="")


def collect(executor: AnsibleExecutor, host: str, unit: str = "", minutes: int = 30,
            mountpoint: str = "") -> tuple[dict[str, Any], str]:
    """Run the role on ``host``: (task name -> registered result, "" or why it failed).
    ``unit`` and ``mountpoint`` (an incident's subject) add that unit's journal and what fills
    that mount point."""
    results: dict[str, Any] = {}

    def keep(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        task = str(data.get("task", ""))
        if task.startswith("Diagnose: ") and "res" in data:
            if event.get("event") == "runner_on_ok":
                results[task.removeprefix("Diagnose: ")] = data["res"]
            data["res"] = {"selfheal": "kept in memory, not written to the artefacts"}
        return True

    # the unit name came from a label: a name that is not a unit is dropped, never passed
    plan = diagnose_plan(host, unit if mask.unit(unit) == unit else "", minutes, mountpoint)
    try:
        outcome = executor.run(plan, "diagnose", event_handler=keep)
    except Exception as exc:  # any failure to gather leaves the facts empty, said clearly
        return results, f"{type(exc).__name__}: {mask.template(str(exc), 200)}"
    if outcome.status is not OutcomeStatus.SUCCEEDED:
        why = "; ".join(mask.template(m, 160) for m in outcome.messages[:2])
        return results, f"diagnose role {outcome.status.value}{': ' + why if why else ''}"
    return results, ""


def _stdout(results: Mapping[str, Any], task: str) -> list[str]:
    res = results.get(task) or {}
    return [line for line in str(res.get("stdout", "")).splitlines() if line.strip()]


def _processes(lines: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        pid, user, cpu, mem, rss, comm = parts
        try:
            out.append({"pid": int(pid), "user": mask.name(user, "user"), "cpu_pct": float(cpu),
                        "mem_pct": float(mem), "rss_mb": round(int(rss) / 1024, 1),
                        "name": mask.name(comm.strip(), "process")})
        except ValueError:
            continue
    return out


def _memory(lines: list[str]) -> dict[str, Any]:
    for line in lines:
        parts = line.split()
        if parts and parts[0] == "Mem:" and len(parts) >= 7:
            total, used, available = int(parts[1]), int(parts[2]), int(parts[6])
            return {"total_mb": total // 2**20, "used_mb": used // 2**20,
                    "available_mb": available // 2**20,
                    "available_pct": round(100 * available / total, 1) if total else None}
    return {}


def _disks(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 6 or not parts[1].isdigit() or int(parts[1]) == 0:
            continue
        mount = parts[5] if _PATH.fullmatch(parts[5]) or parts[5] == "/" else "<path>"
        out.append({"mount": mount, "size_mb": int(parts[1]) // 2**20,
                    "avail_mb": int(parts[3]) // 2**20, "used_pct": int(parts[4].rstrip("%"))})
    return sorted(out, key=lambda d: -d["used_pct"])


def _usage(lines: list[str]) -> list[dict[str, Any]]:
    """du's folders, biggest first, without the mount point itself (the first is the total)."""
    out: list[dict[str, Any]] = []
    for line in lines:
        size, _, path = line.partition("\t")
        if not size.isdigit():
            continue
        out.append({"path": path if _PATH.fullmatch(path) or path == "/" else "<path>",
                    "mb": round(int(size) / 2**20, 1)})
    out.sort(key=lambda d: -d["mb"])
    return out[1:]


def _database(lines: list[str]) -> dict[str, Any]:
    """psql's two answers: the limits, then sessions per (state, role, application)."""
    if not lines or "|" not in lines[0]:
        return {}
    limit, _, reserved = lines[0].partition("|")
    sessions = []
    for line in lines[1:]:
        parts = line.split("|")
        if len(parts) != 5 or not parts[3].isdigit():
            continue
        state, user, app, count, oldest = parts
        sessions.append({"state": state if re.fullmatch(r"[a-z ()-]{1,40}", state) else "<state>",
                         "user": mask.name(user, "user"),
                         "application": mask.name(app, "application") if app else "",
                         "count": int(count),
                         "oldest_s": int(oldest) if oldest.lstrip("-").isdigit() else None})
    try:
        allowed = int(limit) - int(reserved)
    except ValueError:
        return {}
    return {"allowed": allowed, "used": sum(s["count"] for s in sessions), "sessions": sessions}


def _changes(lines: list[str], now: float) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        stamp, _, path = line.partition(" ")
        try:
            at = float(stamp)
        except ValueError:
            continue
        out.append({"path": path if _PATH.fullmatch(path) else "<path>",
                    "hours_ago": round((now - at) / 3600, 1)})
    return sorted(out, key=lambda c: c["hours_ago"])


def _packages(lines: list[str], now: float) -> list[str]:
    out = []
    for line in lines:
        match = _DPKG.match(line)
        if not match:
            continue
        when, action, package, old, new = match.groups()
        at = time.mktime(time.strptime(when, "%Y-%m-%d %H:%M:%S"))
        if now - at > 86400:
            continue
        versions = [v if _VERSION.fullmatch(v) else "<version>" for v in (old, new)]
        out.append(f"{when} {action} {mask.name(package, 'package')} "
                   f"{versions[0]} -> {versions[1]}")
    return out[::-1]


def _releases(results: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    out = []
    for item in (results.get("release links") or {}).get("results", []) or []:
        stat = item.get("stat") or {}
        link = str(item.get("item", ""))
        if not stat.get("exists"):
            continue
        target = str(stat.get("lnk_target") or stat.get("lnk_source") or "")
        out.append({"link": link if _PATH.fullmatch(link) else "<path>",
                    "target": target if _PATH.fullmatch(target) or
                    re.fullmatch(r"[A-Za-z0-9._/@:+-]{1,200}", target) else "<path>",
                    "hours_since_change": round((now - float(stat.get("mtime", now))) / 3600, 1)})
    return out


def _hints(raw: Mapping[str, list[str]], memory: Mapping[str, Any],
           disks: list[dict[str, Any]], releases: list[dict[str, Any]], packages: list[str],
           changes: list[dict[str, Any]], failed: list[str],
           top: list[dict[str, Any]], usage: list[dict[str, Any]],
           database: Mapping[str, Any]) -> list[str]:
    """selfheal's own sentences about the facts, from redacted lines (no host text copied)."""
    hints = []
    oom = [line for key in ("kernel log", "unit journal", "journal warnings")
           for line in raw[key] if _OOM.search(line)]
    if oom:
        hints.append(f"the OOM killer acted ({len(oom)} log lines): memory ran out")
    unit_lines = raw["unit journal"]
    killed = [m for line in unit_lines for m in _KILLED.findall(line)]
    if killed:
        number, sig = killed[-1]
        by = "" if oom else ", not by the OOM killer"
        hints.append(f"the unit's main process was killed by signal {number}/{sig} "
                     f"({len(killed)} times in the window){by}")
    exited = [m for line in unit_lines for m in _EXITED.findall(line)]
    if exited:
        hints.append(f"the unit's main process exited with status {exited[-1]}")
    if any(_SEGV.search(line) for line in unit_lines + raw["kernel log"]):
        hints.append("a segmentation fault was logged")
    hints += [f"filesystem {d['mount']} is {d['used_pct']}% full" for d in disks
              if d["used_pct"] >= 90][:3]
    if usage:
        hints.append("what fills it: " + ", ".join(f"{u['path']} {u['mb']} MB"
                                                    for u in usage[:3]))
    if database:
        hints.append(_database_hint(database))
    if memory.get("available_pct") is not None and memory["available_pct"] < 10:
        hints.append(f"only {memory['available_pct']}% of memory is available")
    hints += [f"release link {r['link']} changed {r['hours_since_change']} h ago (now "
              f"{r['target']}): a deploy" for r in releases if r["hours_since_change"] < 24]
    if packages:
        hints.append(f"{len(packages)} package changes in the last 24 h, the latest: "
                     f"{packages[0]}")
    if changes:
        hints.append(f"{len(changes)} unit or cron files changed in the last 24 h, the latest "
                     f"{changes[0]['path']} {changes[0]['hours_ago']} h ago")
    if failed:
        hints.append(f"failed units: {', '.join(failed[:5])}")
    # ps's %CPU is the average since the process started: a recent spin shows, an old one less
    hints += [f"process {p['name']} (pid {p['pid']}) used {p['cpu_pct']}% of a CPU on average "
              "since it started" for p in top[:2] if p["cpu_pct"] >= 20]
    hints += [f"process {p['name']} (pid {p['pid']}) holds {p['rss_mb']} MB resident"
              for p in sorted(top, key=lambda p: -p["rss_mb"])[:1] if p["rss_mb"] >= 128]
    return hints


def _database_hint(database: Mapping[str, Any]) -> str:
    idle = [s for s in database["sessions"] if s["state"] == "idle in transaction"]
    text = (f"PostgreSQL: {database['used']} client sessions of {database['allowed']} allowed "
            "to non-superusers")
    if idle:
        worst = max(idle, key=lambda s: s["count"])
        oldest = max((s["oldest_s"] or 0) for s in idle)
        text += (f"; {sum(s['count'] for s in idle)} idle in transaction (the oldest for "
                 f"{oldest} s), most held by role {worst['user']}"
                 + (f" (application {worst['application']})" if worst["application"] else ""))
    return text


def parse_facts(results: Mapping[str, Any], error: str, now: float,
                secrets: Iterable[str] = ()) -> HostFacts:
    """Masked, capped facts from the role's results (``collect``); hints from redacted lines."""
    if not results:
        return HostFacts("error", error or "the diagnose role returned nothing")
    broken = sorted(task for task, res in results.items()
                    if isinstance(res, Mapping) and res.get("module_stderr"))
    if broken:  # the tasks never fail the play, so a host that cannot run modules shows here
        first = mask.template(str(results[broken[0]]["module_stderr"]), 120)
        error = "; ".join(filter(None, (error, f"Ansible modules did not run for {broken}: "
                                                 f"{first}")))
    secrets = tuple(secrets)
    raw = {task: [mask.redact(line, secrets) for line in _stdout(results, task)]
           for task in TASKS}
    processes = _processes(raw["processes"])
    memory = _memory(raw["memory"])
    disks = _disks(raw["disks"])
    failed = [mask.unit(line.split()[0]) for line in raw["failed units"] if line.split()]
    changes = _changes(raw["recent changes"], now)
    packages = _packages(raw["package log"], now)
    releases = _releases(results, now)
    usage = _usage(raw["mount usage"])
    database = _database(raw["database sessions"])

    def lines(task: str, limit: int, only: re.Pattern[str] | None = None) -> tuple[str, ...]:
        chosen = [line for line in raw[task] if only is None or only.search(line)]
        # newest last in journalctl's output: keep the newest when there are too many
        return tuple(mask.dedupe((mask.template(line, secrets=secrets)
                                  for line in chosen[::-1]), limit))

    return HostFacts(
        status="ok" if not error else "error", reason=error,
        top_cpu=tuple(processes[:TOP]),
        top_memory=tuple(sorted(processes, key=lambda p: -p["rss_mb"])[:TOP]),
        memory=memory, disks=tuple(disks[:8]), failed_units=tuple(failed[:10]),
        journal=lines("journal warnings", 20), unit_journal=lines("unit journal", 15),
        oom=lines("kernel log", 5, _OOM), changes=tuple(changes[:10]),
        packages=tuple(packages[:10]), releases=tuple(releases), usage=tuple(usage[:8]),
        database=database,
        hints=tuple(_hints(raw, memory, disks, releases, packages, changes, failed,
                           processes, usage, database)))
