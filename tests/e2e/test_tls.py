"""End to end on the lab: an expiring or expired TLS certificate served by nginx on a web host,
seen by the blackbox exporter, renewed by the ``tls_renew`` role, or rolled back when the
renewal cannot fix it. Real nginx, real openssl and lab CA, real Prometheus, real Ansible.

Each test injects a certificate fault on vps1 (the lab's web host), heals it and checks what
nginx serves from the controller's side, as a client sees it. The tests run on a copy of the
project's rules in ``relaxed`` mode, where risk tier 2 runs without approval (``strict`` asks).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from orchestrator import lab
from orchestrator.config import PROJECT_ROOT, Settings, load_settings
from orchestrator.drill import run_drill
from orchestrator.engine import Controller
from orchestrator.lab import ca, faults, services_acme, services_web
from orchestrator.lab.paths import host_address
from orchestrator.manual import ManualRequest, run_by_hand
from orchestrator.models import OutcomeStatus
from orchestrator.wiring import controller_for

pytestmark = pytest.mark.e2e
HOST = "vps1"
WINDOW = timedelta(seconds=604800)
SNAPSHOTS = "/var/lib/selfheal/snapshots/tls_renew"


def rules_copy(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(PROJECT_ROOT / "rules", rules)
    policy = yaml.safe_load((rules / "policy.yml").read_text())
    policy["mode"] = "relaxed"
    (rules / "policy.yml").write_text(yaml.safe_dump(policy))
    return rules


def settings_for(tmp_path: Path, inventory: Path | None = None) -> Settings:
    data = load_settings(lab.lab_paths().settings_file).model_dump(exclude={"source_file"})
    data["state"] = {"dir": tmp_path / "state"}
    data["rules"] = {"dir": rules_copy(tmp_path)}
    if inventory is not None:
        data["inventory"]["path"] = str(inventory)
    return Settings(**data)


def served_pem(host: str = HOST) -> str:
    """The certificate nginx on ``host`` presents now, read from the controller."""
    der = services_web.served_certificate(host_address(int(host.removeprefix("vps"))))
    return ssl.DER_cert_to_PEM_cert(der)


def same_cert(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


def staged_pem(host: str = HOST) -> str:
    """The certificate the lab last issued for ``host`` (what a fault installed)."""
    return (services_web.tls_dir(lab.lab_paths(), host) / "site.crt").read_text()


def issued_by_lab_ca(pem: str) -> bool:
    ca_cert, _ = ca.ca_files(services_web.ca_dir(lab.lab_paths()))
    result = subprocess.run(["openssl", "verify", "-CAfile", str(ca_cert)], input=pem,
                            capture_output=True, text=True, check=False)
    return result.returncode == 0


def on_host(host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return lab.ssh_run(host, list(argv))


def inject(fault: str, host: str) -> float:
    return lab.inject(fault, host).injected_at


def wait_for_diagnosis(controller: Controller, host: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verdicts, _, _ = controller.look()
        if any(v.host == host and any(d.fault == "tls_expiry" for d in v.diagnoses)
               for v in verdicts):
            return
        time.sleep(0.3)
    raise AssertionError(f"Prometheus never showed the expiring certificate on {host}")


def others_untouched(controller: Controller) -> None:
    """No other host was remediated, and none has a tls_renew snapshot."""
    assert {run.host for run in controller.store.history(0)} == {HOST}
    for host in controller.inventory.hosts:
        if host != HOST:
            assert on_host(host, "test", "-e", SNAPSHOTS).returncode == 1, host


def run_cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SELFHEAL_STATE__DIR": str(settings.state.dir),
           "SELFHEAL_RULES__DIR": str(settings.rules.dir)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "--config", str(lab.lab_paths().settings_file),
         *args],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )


def test_expiring_certificate_is_renewed_by_the_sweep(lab_fleet: None, tmp_path: Path) -> None:
    controller = controller_for(settings_for(tmp_path))
    try:
        result = run_drill(controller, "tls_expiry", HOST, inject, timeout_s=240)
        expiring = staged_pem()
        assert result.healed, result
        assert result.remediation == "tls_renew"
        served = served_pem()
        assert not same_cert(served, expiring)
        assert ca.not_after(served) > datetime.now(UTC) + timedelta(days=80)
        assert issued_by_lab_ca(served)
        # the snapshot was dropped once the new certificate was served and checked
        assert on_host(HOST, "test", "-e", f"{SNAPSHOTS}/pending").returncode == 1
        transitions = [t["to"] for t in controller.store.transitions(result.incident_id or 0)]
        assert transitions == ["detected", "diagnosed", "planned", "remediating", "verifying",
                               "resolved"]
        others_untouched(controller)
    finally:
        lab.clear("tls_expiry", HOST)


def test_expired_certificate_renewed_by_hand_check_first_then_idempotent(
    lab_fleet: None, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    controller = controller_for(settings)
    inject("tls_expired", HOST)
    try:
        expired = staged_pem()
        assert ca.not_after(served_pem()) < datetime.now(UTC)
        wait_for_diagnosis(controller, HOST)
        checked = run_cli("remediate", HOST, "tls_renew", "--check", "--json", settings=settings)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout)["outcome"]["check_mode"] is True
        assert same_cert(served_pem(), expired), "check mode changed the served certificate"
        assert on_host(HOST, "test", "-e", f"{SNAPSHOTS}/pending").returncode == 1
        done = run_cli("remediate", HOST, "tls_renew", "--json", settings=settings)
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        url = f"https://{host_address(1)}:443"
        assert report["params"] == {"tls_renew_url": url}
        served = served_pem()
        assert ca.not_after(served) - datetime.now(UTC) > WINDOW
        # no firing series now: the URL is typed; the cooldown is passed by hand, audited
        again = run_cli("remediate", HOST, "tls_renew", "-p", f"tls_renew_url={url}", "--force",
                        "--reason", "idempotency check", "--json", settings=settings)
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout)["outcome"]["changed_hosts"] == [], "not idempotent"
        assert same_cert(served_pem(), served)
    finally:
        lab.clear("tls_expired", HOST)


def test_renewal_that_cannot_fix_is_rolled_back(lab_fleet: None, tmp_path: Path) -> None:
    """The CA issues certificates too short for the window (a host variable, as a team's
    group_vars might set it): the new certificate is installed and served, the role's own check
    fails, and the rollback puts the snapshot back and reloads nginx."""
    inventory = yaml.safe_load(lab.lab_paths().inventory.read_text())
    inventory["lab"]["hosts"][HOST]["tls_renew_days"] = 1
    short = tmp_path / "hosts.yml"
    short.write_text(yaml.safe_dump(inventory))
    controller = controller_for(settings_for(tmp_path, inventory=short))
    try:
        result = run_drill(controller, "tls_expiry", HOST, inject, timeout_s=240)
        expiring = staged_pem()
        assert result.state == "rolled_back", result
        assert same_cert(served_pem(), expiring), "nginx does not serve the restored certificate"
        on_disk = on_host(HOST, "cat", services_web.CERT).stdout
        assert same_cert(on_disk, expiring)
        assert on_host(HOST, "test", "-e", f"{SNAPSHOTS}/pending").returncode == 1
        incident = controller.store.get(result.incident_id or 0)
        assert incident is not None
        assert any("within" in m for m in incident.detail["messages"]), incident.detail
        rollbacks = [r.payload["status"] for r in controller.store.audit_records()
                     if r.action == "ansible.rollback"]
        assert rollbacks == ["succeeded"], rollbacks
        others_untouched(controller)
    finally:
        lab.clear("tls_expiry", HOST)


# The certbot issuer, against pebble (Let's Encrypt's test ACME server) on the controller.
LINEAGE = "selfheal-lab"
LIVE = f"/etc/letsencrypt/live/{LINEAGE}"
ARCHIVE = f"/etc/letsencrypt/archive/{LINEAGE}"
# what certbot's runs leave on a host (the package ships /etc/letsencrypt with only cli.ini)
CERTBOT_STATE = (*(f"/etc/letsencrypt/{part}" for part in (
    "accounts", "archive", "csr", "keys", "live", "renewal", "renewal-hooks")),
    "/var/lib/letsencrypt", "/var/log/letsencrypt", f"{services_web.PAGE_ROOT}/.well-known")
SHORT = int(timedelta(days=2).total_seconds())  # inside the 7-day window, as tls_expiry's
LONG = int(timedelta(days=90).total_seconds())  # Let's Encrypt's


def certbot(host: str, *args: str) -> None:
    """Run certbot on ``host``, trusting pebble through the lab CA bound into the host."""
    result = lab.ssh_run(host, ["env", f"REQUESTS_CA_BUNDLE={services_acme.HOST_CA_BUNDLE}",
                                "certbot", *args, "--non-interactive"], timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr


def serial(pem: str) -> str:
    result = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip().removeprefix("serial=")


def lineage_files(host: str) -> list[str]:
    return sorted(on_host(host, "ls", ARCHIVE).stdout.split())


def serve_lineage(host: str) -> str:
    """Obtain a lineage from pebble and make nginx serve it through links from its own files
    (the lab's site config names those); the lineage's certificate."""
    certbot(host, "certonly", "--webroot", "-w", services_web.PAGE_ROOT, "--cert-name", LINEAGE,
            "-d", f"{host}.selfheal-lab.test", "--server", services_acme.DIRECTORY,
            "--agree-tos", "--register-unsafely-without-email")
    switched = on_host(host, *faults.nginx_switch(
        f"ln -sfn {LIVE}/privkey.pem {services_web.KEY} && "
        f"ln -sfn {LIVE}/fullchain.pem {services_web.CERT} && systemctl reload nginx.service"))
    assert switched.returncode == 0, switched.stderr
    lineage = on_host(host, "cat", f"{LIVE}/cert.pem").stdout
    assert same_cert(served_pem(host), lineage)
    return lineage


def test_certbot_lineage_renewal_rolled_back_then_renewed_by_hand(
    lab_fleet: None, tmp_path: Path
) -> None:
    """certbot renews a lineage nginx serves from pebble, by hand (two plays: the sweep's way
    to the rollback is test_renewal_that_cannot_fix_is_rolled_back's). First the CA issues
    certificates as short as the one served (2 days): nginx serves the renewed one, the role's
    own check fails, and the rollback puts the whole lineage back (the rejected version leaves
    the archive, so certbot never re-deploys it). Then the CA issues 90-day certificates (a
    new pebble: certbot registers with it) and a renewal is served and kept."""
    inventory = yaml.safe_load(lab.lab_paths().inventory.read_text())
    inventory["lab"]["hosts"][HOST].update({
        "tls_renew_issuer": "certbot", "tls_renew_certbot_cert_name": LINEAGE,
        "tls_renew_cert_path": f"{LIVE}/fullchain.pem",
        "tls_renew_key_path": f"{LIVE}/privkey.pem",
        "tls_renew_certbot_ca_bundle": services_acme.HOST_CA_BUNDLE})
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    controller = controller_for(settings_for(tmp_path, inventory=tmp_path / "hosts.yml"))
    paths = lab.lab_paths()
    url = f"https://{host_address(1)}:443"
    try:
        services_acme.start(paths, SHORT)
        first = serve_lineage(HOST)  # lives 2 days: inside the window
        short = run_by_hand(controller, ManualRequest(
            HOST, "tls_renew", {"tls_renew_url": url}, check=False, by="test"))
        assert short.outcome is not None, short.decision
        assert short.outcome.status is OutcomeStatus.FAILED, short.outcome
        # the role saw the renewed certificate served (its own check reads it from nginx)
        renewed = [m for m in short.outcome.messages if "within" in m]
        assert renewed and serial(first) not in renewed[0], short.outcome.messages
        assert on_host(HOST, "test", "-e", f"{SNAPSHOTS}/pending").returncode == 0
        rollback = controller.run_play(short.plan, "rollback")
        assert rollback.status is OutcomeStatus.SUCCEEDED, rollback
        assert same_cert(served_pem(), first), "nginx does not serve the restored certificate"
        assert lineage_files(HOST) == ["cert1.pem", "chain1.pem", "fullchain1.pem",
                                       "privkey1.pem"]
        assert on_host(HOST, "test", "-e", f"{SNAPSHOTS}/pending").returncode == 1

        services_acme.start(paths, LONG)  # a new server: the old account is unknown to it
        on_host(HOST, "rm", "-r", "/etc/letsencrypt/accounts")
        certbot(HOST, "register", "--server", services_acme.DIRECTORY, "--agree-tos",
                "--register-unsafely-without-email")
        on_host(HOST, "sed", "-i", "/^account = /d", f"/etc/letsencrypt/renewal/{LINEAGE}.conf")
        by_hand = run_by_hand(controller, ManualRequest(
            HOST, "tls_renew", {"tls_renew_url": url}, check=False, by="test", force=True,
            reason="the lineage's CA now issues 90-day certificates"))
        assert by_hand.outcome is not None, by_hand.decision
        assert by_hand.outcome.status is OutcomeStatus.SUCCEEDED, by_hand.outcome
        served = served_pem()
        assert serial(served) != serial(first)
        assert ca.not_after(served) > datetime.now(UTC) + timedelta(days=80)
        # certbot numbered the renewal after the restored lineage and repointed live/ at it
        assert on_host(HOST, "readlink", f"{LIVE}/fullchain.pem").stdout.strip() == \
            f"../../archive/{LINEAGE}/fullchain2.pem"
        assert on_host(HOST, "test", "-e", f"{SNAPSHOTS}/pending").returncode == 1
    finally:
        services_acme.stop(paths)
        on_host(HOST, "rm", "-rf", services_web.CERT, services_web.KEY, *CERTBOT_STATE)
        lab.clear("tls_expiry", HOST)
