"""Unit tests of the lab's web hosts: the lab CA (real openssl, in a temp folder), nginx's
per-host site and binds, the image changes, the blackbox scrape job and the certificate faults.
No host is booted here."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import PermanentError, TargetError
from orchestrator.lab import ca, faults, prometheus, services_acme, services_blackbox, services_web
from orchestrator.lab.paths import LabPaths

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=7)  # the tls_cert_expiry signal's window in rules/faults.yml


@pytest.fixture
def paths(tmp_path: Path) -> LabPaths:
    return LabPaths(repo=tmp_path, lab_dir=tmp_path / ".lab", cache_dir=tmp_path / "cache")


def test_validity_kinds_sit_on_the_right_side_of_the_window() -> None:
    valid, expiring, expired = (ca.validity(k, NOW) for k in ("valid", "expiring", "expired"))
    assert valid.not_before < NOW and valid.not_after - NOW > WINDOW
    assert expiring.not_before < NOW < expiring.not_after < NOW + WINDOW
    assert expired.not_before < expired.not_after < NOW


def test_openssl_time_is_utc() -> None:
    east = datetime(2026, 3, 1, 14, 5, 9, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert ca.openssl_time(east) == "20260301140509Z"


def test_issue_signs_with_one_ca_and_the_asked_dates(tmp_path: Path) -> None:
    period = ca.validity("expired", datetime.now(UTC))
    cert, key = ca.issue(tmp_path / "ca", "127.0.1.1", period, tmp_path / "out")
    assert ca.not_after(cert.read_text()) == period.not_after.replace(microsecond=0)
    assert key.stat().st_mode & 0o777 == 0o600
    ca_cert, ca_key = ca.ca_files(tmp_path / "ca")
    assert ca_key.stat().st_mode & 0o777 == 0o600
    first_ca = ca_cert.read_bytes()
    ca.issue(tmp_path / "ca", "127.0.1.1", ca.validity("valid", datetime.now(UTC)),
             tmp_path / "out")
    assert ca_cert.read_bytes() == first_ca, "a second issue made a new CA"
    checked = subprocess.run(["openssl", "verify", "-CAfile", str(ca_cert), str(cert)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.1.1" in text


def test_not_after_refuses_what_is_not_a_certificate() -> None:
    with pytest.raises(Exception, match="not a certificate"):
        ca.not_after("hello")


def test_site_listens_on_the_host_address_only() -> None:
    site = services_web.site_config("127.0.1.5")
    assert "listen 127.0.1.5:443 ssl;" in site
    assert site.count("listen") == 1
    assert f"ssl_certificate {services_web.CERT};" in site


def test_only_web_hosts_get_nginx_files(paths: LabPaths) -> None:
    assert services_web.host_files(paths, "vps2", "127.0.1.2") == []
    binds = services_web.host_files(paths, "vps1", "127.0.1.1")
    targets = {b.rsplit(":", 1)[1] for b in binds}
    assert targets == {services_web.SITE, services_web.LAB_TLS_DIR, services_web.LAB_CA_DIR}
    staged = services_web.tls_dir(paths, "vps1") / "site.crt"
    first = staged.read_bytes()
    services_web.host_files(paths, "vps1", "127.0.1.1")
    assert staged.read_bytes() == first, "a second lab up re-issued a running host's certificate"


def test_certificate_faults_need_a_web_host(paths: LabPaths) -> None:
    with pytest.raises(TargetError, match="web host"):
        services_web.stage("expiring")(paths, "vps2")


def test_image_changes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/nginx/sites-enabled").mkdir(parents=True)
    (root / "etc/nginx/sites-enabled/default").touch()
    (root / "etc/nginx/nginx.conf").write_text("user www-data;\nworker_processes auto;\n")
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    services_web.customise(root)
    assert not (root / "etc/nginx/sites-enabled/default").exists()
    assert "worker_processes 1;" in (root / "etc/nginx/nginx.conf").read_text()
    drop_in = (root / "etc/systemd/system/nginx.service.d/selfheal-lab.conf").read_text()
    assert "ConditionPathExists=/etc/selfheal-lab/web" in drop_in
    seed = (root / "etc/systemd/system" / services_web.SEED_UNIT).read_text()
    assert "ConditionPathExists=!/etc/nginx/tls/site.crt" in seed
    assert (root / "etc/systemd/system/multi-user.target.wants" / services_web.SEED_UNIT
            ).is_symlink()
    assert (root / services_web.PAGE_ROOT.lstrip("/") / "index.html").is_file()
    assert (root / services_web.LAB_CA_DIR.lstrip("/")).is_dir()


def test_blackbox_probes_web_hosts_with_instance_and_target_labels() -> None:
    hosts = {f"vps{i}": f"127.0.1.{i}" for i in range(1, 6)}
    (job,) = services_blackbox.scrape_jobs(hosts)
    assert job["static_configs"] == [{"targets": ["127.0.1.1:443", "127.0.1.5:443"]}]
    assert job["params"] == {"module": [services_blackbox.MODULE]}
    rules = {r["target_label"]: r for r in job["relabel_configs"]}
    assert rules["__param_target"]["replacement"] == "https://$1"
    assert rules["target"]["source_labels"] == ["__param_target"]
    assert rules["instance"]["source_labels"] == ["__address__"]
    assert rules["__address__"]["replacement"] == services_blackbox.LISTEN
    assert [r["target_label"] for r in job["relabel_configs"]][-1] == "__address__"
    module = services_blackbox.CONFIG["modules"][services_blackbox.MODULE]
    assert module["http"]["tls_config"]["insecure_skip_verify"] is True
    assert services_blackbox.scrape_jobs({"vps2": "127.0.1.2"}) == []


def test_prometheus_scrapes_the_tls_job(paths: LabPaths) -> None:
    prometheus.write_config(paths, {"vps1": "127.0.1.1", "vps2": "127.0.1.2"})
    assert {"tls/127.0.1.1:443"} == {t for t in prometheus.targets(paths)
                                     if t.startswith("tls/")}
    config = yaml.safe_load(paths.prometheus_config.read_text())
    jobs = [j["job_name"] for j in config["scrape_configs"]]
    assert jobs == ["node", "demo", "postgres", "tls", "process"]


def test_certificate_faults_are_staged_cleared_and_need_a_web_host() -> None:
    for name in ("tls_expiry", "tls_expired"):
        fault = faults.FAULTS[name]
        assert fault.clear and fault.prepare and fault.prepare_clear and fault.settle
        assert fault.group == "web"


def test_acme_server_config_serves_in_the_lab_net_with_the_asked_validity(
    tmp_path: Path,
) -> None:
    pebble = services_acme.config(tmp_path, 172800)["pebble"]
    assert isinstance(pebble, dict)
    assert pebble["listenAddress"] == f"{services_acme.ADDRESS}:{services_acme.PORT}"
    assert services_acme.DIRECTORY.startswith(f"https://{pebble['listenAddress']}/")
    assert pebble["certificate"] == str(tmp_path / "site.crt")
    assert pebble["privateKey"] == str(tmp_path / "site.key")
    assert pebble["certificateValidityPeriod"] == 172800
    assert f"{services_web.LAB_CA_DIR}/ca.crt" == services_acme.HOST_CA_BUNDLE
    with pytest.raises(PermanentError, match="must be positive"):
        services_acme.config(tmp_path, 0)
