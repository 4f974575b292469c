"""Tell a human when an incident needs one: escalated, awaiting approval, rolled back or held.

Called by the engine after each incident transition (``Notifier.incident_changed``) and by
``selfheal notify test``. Messages go through apprise URLs from ``notify`` settings (Slack, a JSON
webhook, e-mail, ...). Telling people must never stop healing: a bad URL, a receiver that is down
or slow, or apprise raising is logged as a warning and the caller goes on; no call waits longer
than ``timeout_s``. The URLs may hold tokens, so they never appear in logs or output: a target is
named by where it was configured (``notify.urls[1] (slack)``), and apprise's own log lines are
kept off the root logger and scrubbed of every part of the URL before they are repeated.
apprise is imported on first send, not at start-up (0.2 s idle, up to 0.8 s on a busy
machine, measured here).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from orchestrator.config import NotifySettings
    from orchestrator.models import Incident

log = logging.getLogger(__name__)

# Compared as strings so a state added to IncidentState later ("held") needs no import here.
WHAT_TO_DO = {
    "escalated": "the fix failed or nothing in the catalog fits: a human must look",
    "awaiting_approval": "a fix is planned and waits for approval: "
                         "selfheal incidents approve {id} --by NAME",
    "rolled_back": "the fix did not hold and was undone: a human must look",
    "held": "a limit says wait (too much of the fleet broken, blast radius, cooldown); "
            "it resumes by itself when the limit clears",
}
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{0,31})://", re.IGNORECASE)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
MAX_REASONS = 1000
MAX_SUBJECT = 200  # a subject is label text: kept short in a page
PATIENCE = 3  # a send the caller stopped waiting for may take this many timeouts to finish


@dataclass(frozen=True)
class Target:
    """One apprise URL and the name it is shown by (never the URL itself)."""

    name: str
    url: str


@dataclass(frozen=True)
class Delivery:
    """How sending to one target went."""

    target: str
    sent: bool
    reason: str = ""


def incident_message(incident: Incident, note: str) -> tuple[str, str]:
    """Title and body for an incident that needs a human; no parameters, no secrets."""
    state = _state(incident)
    # which unit or mount point, from labels: two units down on one host are two pages
    subject = incident.subject[:MAX_SUBJECT]
    title = (f"selfheal: {incident.fault}{f' ({subject})' if subject else ''} on "
             f"{incident.host} is {state}")
    reasons = _USERINFO.sub(r"\1***@", note or "-")[:MAX_REASONS]
    lines = [
        f"host: {incident.host}",
        f"fault: {incident.fault}",
        *([f"subject: {subject}"] if subject else []),
        f"state: {state}",
        f"remediation: {incident.remediation or '-'}",
        f"reasons: {reasons}",
        f"what now: {WHAT_TO_DO.get(state, state).format(id=incident.id)}",
        f"incident: {incident.id} (selfheal incidents show {incident.id})",
        f"controller: {socket.gethostname()}",
    ]
    return title, "\n".join(lines)


class Notifier:
    """Sends each incident state a human must hear about once, to every configured target."""

    def __init__(self, targets: Sequence[Target], timeout_s: float = 10.0,
                 problems: Sequence[str] = ()) -> None:
        self.targets = tuple(targets)
        self.timeout_s = timeout_s
        self.problems = tuple(problems)  # configured entries that could not be used
        # (incident, state, when it got there): a re-ask in the same state (a changed plan after
        # an approval) is a new message; the same call twice is not
        self._told: set[tuple[int, str, float]] = set()
        self._stalled: dict[str, int] = {}  # target name -> sends the caller stopped waiting for
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> Notifier:
        """Never raises: an entry that cannot be used is logged and left out, so a notify
        mistake never stops healing (``selfheal notify test`` reports it with exit 2)."""
        targets: list[Target] = []
        problems: list[str] = []
        for i, secret in enumerate(settings.urls):
            _add(targets, problems, f"notify.urls[{i}]", secret.get_secret_value())
        if settings.urls_file is not None:
            for number, url in _read_urls_file(settings.urls_file, problems):
                _add(targets, problems, f"notify.urls_file line {number}", url)
        for problem in problems:
            log.warning("notify target not used", extra={"problem": problem})
        return cls(targets, settings.timeout_s, problems)

    def incident_changed(self, incident: Incident, note: str) -> None:
        """Tell people if the incident now needs a human; never raises, never waits long."""
        try:
            state = _state(incident)
            if state not in WHAT_TO_DO or not self.targets:
                return
            with self._lock:
                key = (incident.id, state, incident.updated_at)
                if key in self._told:
                    return
                self._told.add(key)
            title, body = incident_message(incident, note)
            deliveries = self.send(title, body, "failure" if state in (
                "escalated", "rolled_back") else "warning")
        except Exception as exc:  # a notifier bug must not stop healing either
            log.warning("notification failed", extra={
                "incident": getattr(incident, "id", None), "error": type(exc).__name__})
            return
        for d in deliveries:
            if d.sent:
                log.info("notified", extra={"incident": incident.id, "state": state,
                                            "target": d.target})
            else:
                log.warning("notification not delivered", extra={
                    "incident": incident.id, "host": incident.host, "state": state,
                    "target": d.target, "reason": d.reason})

    def send(self, title: str, body: str, kind: str = "info") -> list[Delivery]:
        """Send to every target at once and wait at most ``timeout_s`` in all. A target that
        has not answered by then is reported as not delivered and left to finish on its own
        (its outcome is logged when it comes); while it is still stalled, later messages to it
        are sent without waiting, so a fleet-wide outage never costs a sweep more than one
        timeout."""
        sends = [_Send(target) for target in self.targets]
        for i, one in enumerate(sends):
            threading.Thread(target=self._run, args=(one, title, body, kind), daemon=True,
                             name=f"notify-{i}").start()
        deadline = time.monotonic() + self.timeout_s
        deliveries = []
        for one in sends:
            name = one.target.name
            with self._lock:
                stalled = self._stalled.get(name, 0) > 0
            one.done.wait(0.0 if stalled else max(0.0, deadline - time.monotonic()))
            with self._lock:
                if not one.done.is_set():
                    one.abandoned = True
                    self._stalled[name] = self._stalled.get(name, 0) + 1
            if not one.abandoned:
                deliveries.append(one.result)
                continue
            why = ("the receiver has not answered an earlier message yet; sent without "
                   "waiting" if stalled else
                   f"no answer within {self.timeout_s:g}s (notify.timeout_s); still trying")
            deliveries.append(Delivery(name, False, f"{why}; the outcome is logged when it comes"))
        return deliveries

    def _run(self, one: _Send, title: str, body: str, kind: str) -> None:
        result = _deliver(one.target, title, body, kind, self.timeout_s)
        with self._lock:
            one.result = result
            one.done.set()
            late = one.abandoned
            if late:
                self._stalled[one.target.name] -= 1
        if late:
            log.log(logging.INFO if result.sent else logging.WARNING,
                    "late notification " + ("delivered" if result.sent else "not delivered"),
                    extra={"target": result.target, "reason": result.reason})


@dataclass
class _Send:
    """One message on its way to one target."""

    target: Target
    result: Delivery = Delivery("", False)
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False  # the caller stopped waiting for it


def _deliver(target: Target, title: str, body: str, kind: str, timeout_s: float) -> Delivery:
    capture = _apprise_capture()
    capture.start()
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(target.url)
        if plugin is None:
            return Delivery(target.name, False, _why(capture.stop(), target.url,
                                                     "apprise does not accept this URL; "
                                                     "check its scheme and fields"))
        # the caller waits timeout_s; a slow receiver still gets a while longer to answer
        plugin.socket_connect_timeout = timeout_s * PATIENCE
        plugin.socket_read_timeout = timeout_s * PATIENCE
        if plugin.notify(body=body, title=title, notify_type=apprise.NotifyType(kind)):
            return Delivery(target.name, True)
        return Delivery(target.name, False, _why(capture.stop(), target.url,
                                                 "the receiver refused or did not answer"))
    except Exception as exc:  # apprise or a plugin raising: report, never propagate
        return Delivery(target.name, False, _scrub(f"{type(exc).__name__}: {exc}", target.url))
    finally:
        capture.stop()


def _why(lines: list[str], url: str, fallback: str) -> str:
    return _scrub("; ".join(lines[-3:]), url) if lines else fallback


def _scrub(text: str, url: str) -> str:
    """``text`` with every part of ``url`` that could be a secret replaced by ***."""
    for piece in sorted(_url_pieces(url), key=len, reverse=True):
        text = text.replace(piece, "***")
    return _USERINFO.sub(r"\1***@", text)[:500]


def _url_pieces(url: str) -> set[str]:
    parts = urlsplit(url)
    pieces = [parts.username, parts.password, parts.fragment, *parts.path.split("/"),
              *(value for _, value in parse_qsl(parts.query))]
    if parts.hostname and "." not in parts.hostname:  # slack://TokenA/TokenB/...: a token
        pieces.append(parts.hostname)
    found = {p for p in pieces if p and len(p) >= 3}
    return found | {unquote(p) for p in found}


def _add(targets: list[Target], problems: list[str], name: str, url: str) -> None:
    url = url.strip()
    match = _SCHEME.match(url)
    if match is None:
        problems.append(f"{name} is not an apprise URL (expected scheme://...; e.g. "
                        "jsons://host/path, slack://..., mailtos://...)")
        return
    targets.append(Target(f"{name} ({match.group(1).lower()})", url))


def _read_urls_file(path: Path, problems: list[str]) -> list[tuple[int, str]]:
    try:
        text = path.read_text()
        shared = path.stat().st_mode & 0o077
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        problems.append(f"notify.urls_file {path} cannot be read ({why}); create it "
                        "with one apprise URL a line, or unset notify.urls_file")
        return []
    if shared:
        log.warning("notify.urls_file is readable by others; chmod 600 it",
                    extra={"path": str(path)})
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def _state(incident: Incident) -> str:
    return str(getattr(incident.state, "value", incident.state))


class _ThreadCapture(logging.Handler):
    """apprise's warnings, collected per sending thread so each delivery can say why."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lines: dict[int, list[str]] = {}
        self._guard = threading.Lock()

    def start(self) -> None:
        with self._guard:
            self._lines[threading.get_ident()] = []

    def stop(self) -> list[str]:
        with self._guard:
            return self._lines.pop(threading.get_ident(), [])

    def emit(self, record: logging.LogRecord) -> None:
        lines = self._lines.get(record.thread or 0)
        if lines is not None:
            try:
                lines.append(record.getMessage())
            except Exception:  # a malformed log call in a plugin
                lines.append(str(record.msg))


_capture: _ThreadCapture | None = None
_capture_lock = threading.Lock()


def _apprise_capture() -> _ThreadCapture:
    global _capture
    with _capture_lock:
        if _capture is None:
            logger = logging.getLogger("apprise")
            # apprise logs request URLs at debug level; only our scrubbed lines go further
            logger.propagate = False
            logger.setLevel(logging.WARNING)
            _capture = _ThreadCapture()
            logger.addHandler(_capture)
        return _capture
