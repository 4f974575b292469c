"""Notifications reach a real local receiver once per incident state; failures never raise.

Every receiver here is real and on 127.0.0.1 (tests/receivers.py), reached through apprise's
own ``json://`` and ``mailto://`` plugins.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.config import NotifySettings
from orchestrator.models import Incident, IncidentState as S
from orchestrator.notify import Notifier
from tests.receivers import smtp_server, webhook

TOKEN = "s3cr3t-t0ken-in-the-path"
PASSWORD = "hunter2-password"


def notifier(*urls: str, timeout_s: float = 5.0) -> Notifier:
    return Notifier.from_settings(NotifySettings(urls=list(urls), timeout_s=timeout_s))  # type: ignore[arg-type]


def incident(state: Any = S.ESCALATED, incident_id: int = 7) -> Incident:
    return Incident(id=incident_id, host="vps3", fault="disk_full", state=cast(S, state),
                    detected_at=1.0, updated_at=2.0, remediation="disk_cleanup",
                    detail={"params": {"api_token": "param-secret-value"}})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Every logger at DEBUG, except those ``logs.setup`` keeps at WARNING in production
    (urllib3 logs each request's path at DEBUG)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="urllib3")


def all_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def test_escalation_arrives_once_with_what_a_human_needs() -> None:
    with webhook() as hook:
        n = notifier(f"json://127.0.0.1:{hook.port}/hook")
        n.incident_changed(incident(), "play failed; escalated")
        n.incident_changed(incident(), "play failed; escalated")  # same incident, same state
        assert len(hook.received) == 1
        payload = hook.received[0]
        assert payload["title"] == "selfheal: disk_full on vps3 is escalated"
        body = payload["message"]
        for expected in ("host: vps3", "fault: disk_full", "state: escalated",
                         "remediation: disk_cleanup", "reasons: play failed; escalated",
                         "selfheal incidents show 7"):
            assert expected in body
        assert "param-secret-value" not in body  # no vars, no parameters
        assert payload["type"] == "failure"


def test_two_mount_points_of_one_host_page_twice_each_naming_its_own() -> None:
    with webhook() as hook:
        n = notifier(f"json://127.0.0.1:{hook.port}/hook")
        for number, mount in ((8, "/srv"), (9, "/var")):
            full = incident(incident_id=number)
            n.incident_changed(Incident(**{**vars(full), "detail": {
                "subject": f"mountpoint={mount}"}}), "rollback succeeded; escalated")
        titles = sorted(m["title"] for m in hook.received)
        assert titles == ["selfheal: disk_full (mountpoint=/srv) on vps3 is escalated",
                          "selfheal: disk_full (mountpoint=/var) on vps3 is escalated"]
        assert all("subject: mountpoint=" in m["message"] for m in hook.received)


@pytest.mark.parametrize("state", [S.AWAITING_APPROVAL, S.ROLLED_BACK, "held"])
def test_every_state_a_human_must_hear_about_is_sent(state: Any) -> None:
    """"held" is matched by its value, so the state the lifecycle adds works unchanged."""
    with webhook() as hook:
        notifier(f"json://127.0.0.1:{hook.port}/").incident_changed(incident(state), "why")
        assert [p["title"] for p in hook.received] == [
            f"selfheal: disk_full on vps3 is {getattr(state, 'value', state)}"]


def test_approval_message_says_how_to_approve() -> None:
    with webhook() as hook:
        notifier(f"json://127.0.0.1:{hook.port}/").incident_changed(
            incident(S.AWAITING_APPROVAL, 12), "risk tier 3")
        assert "selfheal incidents approve 12 --by NAME" in hook.received[0]["message"]


def test_states_nobody_needs_to_hear_about_send_nothing() -> None:
    with webhook() as hook:
        n = notifier(f"json://127.0.0.1:{hook.port}/")
        for state in (S.DETECTED, S.PLANNED, S.REMEDIATING, S.VERIFYING, S.RESOLVED,
                      S.SUPPRESSED):
            n.incident_changed(incident(state), "")
        assert hook.received == []


def test_a_new_state_of_the_same_incident_is_sent_again() -> None:
    with webhook() as hook:
        n = notifier(f"json://127.0.0.1:{hook.port}/")
        n.incident_changed(incident("held"), "too much of the fleet is broken")
        n.incident_changed(incident(S.ESCALATED), "play failed")
        n.incident_changed(incident(S.ESCALATED, incident_id=8), "play failed")
        assert [p["title"].rsplit(" ", 1)[1] for p in hook.received] == [
            "held", "escalated", "escalated"]


def test_receiver_error_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    log_everything(caplog)
    with webhook() as hook:
        hook.status = 500
        notifier(f"json://selfheal:{PASSWORD}@127.0.0.1:{hook.port}/{TOKEN}").incident_changed(
            incident(), "play failed")
        assert len(hook.received) == 1  # it was tried
    (warning,) = [r for r in caplog.records if r.getMessage() == "notification not delivered"]
    assert warning.levelno == logging.WARNING
    assert vars(warning)["target"] == "notify.urls[0] (json)"
    assert vars(warning)["incident"] == 7 and vars(warning)["state"] == "escalated"
    assert "500" in vars(warning)["reason"]
    assert TOKEN not in all_logged(caplog) and PASSWORD not in all_logged(caplog)


def test_closed_port_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    log_everything(caplog)
    notifier(f"json://127.0.0.1:{closed_port()}/{TOKEN}").incident_changed(incident(), "x")
    (warning,) = [r for r in caplog.records if r.getMessage() == "notification not delivered"]
    assert "Connection error" in vars(warning)["reason"]
    assert TOKEN not in all_logged(caplog)


def test_slow_receiver_is_cut_by_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with webhook() as hook:
        hook.delay_s = 0.9  # longer than the caller waits, shorter than the socket timeouts
        n = notifier(f"json://127.0.0.1:{hook.port}/", timeout_s=0.5)
        started = time.monotonic()
        n.incident_changed(incident(incident_id=1), "x")
        first = time.monotonic() - started
        n.incident_changed(incident(incident_id=2), "x")  # the receiver is still stalled
        second = time.monotonic() - started - first
        assert first < 0.9, f"the caller waited {first:.1f}s (notify.timeout_s is 0.5)"
        assert second < 0.3, f"a second message to a stalled receiver waited {second:.1f}s"
        deadline = time.monotonic() + 10
        while len(hook.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(p["message"].count("incident: 1 ") for p in hook.received) == [0, 1]
    not_delivered = [vars(r)["reason"] for r in caplog.records
                     if r.getMessage() == "notification not delivered"]
    assert not_delivered[0].startswith("no answer within 0.5s (notify.timeout_s)")
    assert not_delivered[1].startswith("the receiver has not answered an earlier message yet")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(
            r.getMessage() == "late notification delivered" for r in caplog.records) < 2:
        time.sleep(0.1)
    assert sum(r.getMessage() == "late notification delivered" for r in caplog.records) == 2


def test_url_apprise_refuses_is_logged_and_the_others_still_get_it(
        caplog: pytest.LogCaptureFixture) -> None:
    with webhook() as hook:
        n = notifier("nosuchservice://abc/def", "no scheme at all",
                     f"json://127.0.0.1:{hook.port}/")
        n.incident_changed(incident(), "x")
        assert len(hook.received) == 1
    reasons = {vars(r)["target"]: vars(r)["reason"] for r in caplog.records
               if r.getMessage() == "notification not delivered"}
    assert list(reasons) == ["notify.urls[0] (nosuchservice)"]
    assert n.problems == ("notify.urls[1] is not an apprise URL (expected scheme://...; e.g. "
                          "jsons://host/path, slack://..., mailtos://...)",)


def test_no_targets_is_a_quiet_no_op() -> None:
    n = notifier()
    n.incident_changed(incident(), "x")
    assert n.targets == ()


def test_reasons_with_credentials_in_a_url_are_redacted() -> None:
    with webhook() as hook:
        notifier(f"json://127.0.0.1:{hook.port}/").incident_changed(
            incident(), f"health check http://admin:{PASSWORD}@127.0.0.1:8080/healthz failed")
        assert PASSWORD not in hook.received[0]["message"]
        assert "http://***@127.0.0.1:8080/healthz" in hook.received[0]["message"]


def test_urls_file_is_read_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    with webhook() as hook:
        urls = tmp_path / "notify-urls"
        urls.write_text(f"# on-call webhook\n\njson://127.0.0.1:{hook.port}/{TOKEN}\n")
        urls.chmod(0o600)
        n = Notifier.from_settings(NotifySettings(urls_file=urls))  # type: ignore[call-arg]
        assert [t.name for t in n.targets] == ["notify.urls_file line 3 (json)"]
        n.incident_changed(incident(), "x")
        assert hook.paths == [f"/{TOKEN}"]
    missing = Notifier.from_settings(NotifySettings(urls_file=tmp_path / "nope"))  # type: ignore[call-arg]
    assert missing.targets == ()
    assert "cannot be read" in missing.problems[0] and "unset notify.urls_file" in \
        missing.problems[0]


def test_email_reaches_a_local_smtp_server() -> None:
    with smtp_server() as box:
        notifier(f"mailto://127.0.0.1:{box.port}?from=selfheal@example.net"
                 "&to=ops@example.net&mode=insecure").incident_changed(incident(), "play failed")
        (mail,) = box.mails
    assert mail["rcpt"] == ["<ops@example.net>"]
    assert "Subject: selfheal: disk_full on vps3 is escalated" in mail["data"]
    assert "selfheal incidents show 7" in mail["data"]


def test_apprise_is_not_imported_at_start_up() -> None:
    """``import apprise`` costs about 0.2 s; the CLI and the sweep pay it on first send only."""
    done = subprocess.run([sys.executable, "-c", "import sys, orchestrator.cli.app, "
                           "orchestrator.wiring, orchestrator.notify; "
                           "print('apprise' in sys.modules)"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"


def test_urls_come_from_the_environment_and_never_show_in_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config import load_settings

    config = tmp_path / "selfheal.yml"
    config.write_text("notify: {urls_file: secrets/notify-urls, timeout_s: 3}\n")
    monkeypatch.setenv("SELFHEAL_NOTIFY__URLS", f'["jsons://hooks.example.net/{TOKEN}"]')
    settings = load_settings(config)
    assert [u.get_secret_value() for u in settings.notify.urls] == [
        f"jsons://hooks.example.net/{TOKEN}"]
    assert settings.notify.urls_file == tmp_path / "secrets" / "notify-urls"
    assert settings.notify.timeout_s == 3
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_urls_file_that_is_not_text_is_reported_not_raised(tmp_path: Path) -> None:
    urls = tmp_path / "notify-urls"
    urls.write_bytes(b"\xff\xfe\x00binary")
    n = Notifier.from_settings(NotifySettings(urls_file=urls))  # type: ignore[call-arg]
    assert n.targets == ()
    assert "cannot be read (not UTF-8 text)" in n.problems[0]
