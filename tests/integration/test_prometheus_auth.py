"""Prometheus behind authentication: basic auth over TLS, and a bearer token, for real.

A second real Prometheus serves https with a certificate signed by a throw-away CA (openssl) and
demands basic auth (``--web.config.file`` with a bcrypt hash); Prometheus itself cannot check a
bearer token, so a small reverse proxy in front of the plain test Prometheus does. Every way
selfheal builds a client is exercised: the sweep's instant queries, the detection stage and the
baseline training's range queries. No secret may show in an error, a log line or ``--json``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.config import PrometheusSettings, RulesSettings, Settings, StateSettings
from orchestrator.core.faults import Signal
from orchestrator.detection import AnomalyWatch
from orchestrator.errors import ConfigError, SourceUnavailable
from orchestrator.models import Health
from orchestrator.sources.prometheus import PrometheusSource, connect
from tests.conftest import write_detection_rules
from tests.integration.conftest import PROMETHEUS, Exporter, RealPrometheus, free_port

pytestmark = pytest.mark.integration
runner = CliRunner()

USER, PASSWORD, TOKEN = "selfheal", "s3cret-Pa55word", "tok-9f8e7d6c5b4a"
WRONG = "wr0ng-Pa55word"
SIGNAL = Signal(name="service_up", promql='selfheal_test_service_up{unit="auth-svc"}',
                firing_when="== 0")
HOSTS = {"127.0.43.1": "a1", "127.0.43.2": "a2"}


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():  # crypt is deprecated, and the only bcrypt we have here
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass
class GuardedPrometheus:
    url: str
    ca: Path
    work: Path


@pytest.fixture(scope="module")
def guarded(exporter: Exporter, prometheus: RealPrometheus,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedPrometheus]:
    """A real Prometheus on https with basic auth, scraping the shared test exporter."""
    work = tmp_path_factory.mktemp("guarded")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", work / "ca.key", "-out", work / "ca.pem",
             "-subj", "/CN=selfheal test CA", "-days", "2")
    _openssl("req", *ec, "-keyout", work / "server.key", "-out", work / "server.csr",
             "-subj", "/CN=127.0.0.1")
    (work / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", work / "server.csr", "-CA", work / "ca.pem", "-CAkey",
             work / "ca.key", "-CAcreateserial", "-out", work / "server.pem", "-days", "2",
             "-extfile", work / "san.cnf")
    (work / "web.yml").write_text(
        f"tls_server_config: {{cert_file: {work / 'server.pem'}, "
        f"key_file: {work / 'server.key'}}}\n"
        f"basic_auth_users: {{{USER}: '{_bcrypt(PASSWORD)}'}}\n")
    (work / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: exporter
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
""")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
         f"--web.config.file={work / 'web.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("wb"))
    url = f"https://127.0.0.1:{port}"
    exporter.gauge.labels("127.0.43.1:8080", "auth-svc").set(0)
    exporter.gauge.labels("127.0.43.2:8080", "auth-svc").set(1)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                found = requests.get(f"{url}/api/v1/query", auth=(USER, PASSWORD),
                                     params={"query": SIGNAL.promql}, verify=str(work / "ca.pem"),
                                     timeout=2).json()["data"]["result"]
                if len(found) == 2:
                    break
            except (requests.RequestException, KeyError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError((work / "prometheus.log").read_text()[-2000:])
            time.sleep(0.3)
        yield GuardedPrometheus(url, work / "ca.pem", work)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def bearer_proxy(prometheus: RealPrometheus, exporter: Exporter) -> Iterator[str]:
    """A reverse proxy that forwards to the plain Prometheus only with the right bearer token."""
    exporter.gauge.labels("127.0.43.1:8080", "auth-svc").set(0)
    exporter.gauge.labels("127.0.43.2:8080", "auth-svc").set(1)
    prometheus.wait_for('selfheal_test_service_up{unit="auth-svc",instance="127.0.43.2:8080"}')

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b"Unauthorized\n")
                return
            with urllib.request.urlopen(prometheus.url + self.path, timeout=5) as upstream:
                body = upstream.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def observe(settings: PrometheusSettings) -> dict[str, Health]:
    source = PrometheusSource(connect(settings), settings)
    return {f.host: f.health for f in source.observe([SIGNAL], HOSTS, time.time()).findings}


def secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prometheus.secret"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_basic_auth_over_tls_with_a_password_file_and_a_ca_file(guarded: GuardedPrometheus,
                                                                tmp_path: Path) -> None:
    settings = PrometheusSettings(url=guarded.url, username=USER, ca_file=guarded.ca,
                                  password_file=secret_file(tmp_path, PASSWORD))
    assert observe(settings) == {"a1": Health.FIRING, "a2": Health.HEALTHY}


def test_a_password_from_the_environment(guarded: GuardedPrometheus, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config import load_settings

    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: '{guarded.url}', username: {USER}, "
                      "ca_file: ca.pem}\n")
    (tmp_path / "ca.pem").write_bytes(guarded.ca.read_bytes())
    monkeypatch.setenv("SELFHEAL_PROMETHEUS__PASSWORD", PASSWORD)
    settings = load_settings(config)
    assert settings.prometheus.ca_file == tmp_path / "ca.pem"  # relative to the file
    assert PASSWORD not in repr(settings)
    assert observe(settings.prometheus)["a1"] is Health.FIRING


def test_a_wrong_password_is_a_clear_error_without_the_secret(guarded: GuardedPrometheus,
                                                              tmp_path: Path) -> None:
    settings = PrometheusSettings(url=guarded.url, username=USER, ca_file=guarded.ca,
                                  password_file=secret_file(tmp_path, WRONG))
    with pytest.raises(SourceUnavailable) as err:
        observe(settings)
    message = str(err.value)
    assert "refused the credentials (HTTP 401)" in message
    assert "password_file" in message and WRONG not in message


def test_a_password_in_the_url_works_and_is_redacted_everywhere(
        guarded: GuardedPrometheus, caplog: pytest.LogCaptureFixture) -> None:
    good = PrometheusSettings(url=guarded.url.replace("://", f"://{USER}:{PASSWORD}@"),
                              ca_file=guarded.ca)
    assert observe(good)["a1"] is Health.FIRING
    assert PASSWORD not in repr(good) and f"{USER}:***@" in good.redacted_url
    bad = PrometheusSettings(url=guarded.url.replace("://", f"://{USER}:{WRONG}@"),
                             ca_file=guarded.ca)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceUnavailable) as err:
        observe(bad)
    assert f"{USER}:***@127.0.0.1" in str(err.value) and "HTTP 401" in str(err.value)
    assert WRONG not in str(err.value) and WRONG not in caplog.text


def test_without_the_ca_file_tls_verification_fails_and_says_so(
        guarded: GuardedPrometheus, tmp_path: Path) -> None:
    settings = PrometheusSettings(url=guarded.url, username=USER,
                                  password_file=secret_file(tmp_path, PASSWORD))
    with pytest.raises(SourceUnavailable, match=r"TLS verification failed.*prometheus\.ca_file"):
        observe(settings)


def test_bearer_token_from_a_file_and_from_the_environment(
        bearer_proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_file = PrometheusSettings(url=bearer_proxy,
                                   bearer_token_file=secret_file(tmp_path, TOKEN))
    assert observe(from_file) == {"a1": Health.FIRING, "a2": Health.HEALTHY}
    monkeypatch.setenv("SELFHEAL_PROMETHEUS__BEARER_TOKEN", TOKEN)
    monkeypatch.setenv("SELFHEAL_PROMETHEUS__URL", bearer_proxy)
    from orchestrator.config import load_settings

    assert observe(load_settings(None).prometheus)["a2"] is Health.HEALTHY
    wrong = PrometheusSettings(url=bearer_proxy, bearer_token="not-the-token")
    with pytest.raises(SourceUnavailable) as err:
        observe(wrong)
    assert "HTTP 401" in str(err.value) and "not-the-token" not in str(err.value)


def test_detection_and_baseline_training_authenticate_too(guarded: GuardedPrometheus,
                                                           tmp_path: Path) -> None:
    from orchestrator.sources.prometheus import connect_range

    rules = tmp_path / "rules"
    rules.mkdir()
    write_detection_rules(rules,
        "signals:\n  auth_svc:\n    promql: sum by (instance) "
        "(selfheal_test_service_up{unit=\"auth-svc\"})\n    harmful: down\n"
        "    threshold: '< 0.5'\n")
    settings = Settings(
        prometheus=PrometheusSettings(url=guarded.url, username=USER, ca_file=guarded.ca,
                                      password_file=secret_file(tmp_path, PASSWORD)),
        state=StateSettings(dir=tmp_path / "state"), rules=RulesSettings(dir=rules))
    report = AnomalyWatch(settings, connect(settings.prometheus), HOSTS).observe(time.time())
    assert [(f.host, f.signal) for f in report.findings] == [("a1", "auth_svc")]
    now = time.time() + 2  # the client rounds times to seconds: never end before the 1st scrape
    series = connect_range(settings.prometheus)(SIGNAL.promql, now - 10, now, "1s")
    assert {s["metric"]["instance"] for s in series} == {"127.0.43.1:8080", "127.0.43.2:8080"}
    wrong = settings.model_copy(update={"prometheus": PrometheusSettings(
        url=guarded.url, username=USER, password=WRONG, ca_file=guarded.ca)})
    with pytest.raises(SourceUnavailable, match="HTTP 401") as err:
        connect_range(wrong.prometheus)(SIGNAL.promql, now - 10, now, "1s")
    assert WRONG not in str(err.value)


def test_sweep_json_and_logs_never_show_the_secret(guarded: GuardedPrometheus,
                                                   tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("a1 selfheal_prometheus_host=127.0.43.1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(
        f"prometheus: {{url: '{guarded.url.replace('://', f'://{USER}:{WRONG}@')}', "
        f"ca_file: '{guarded.ca}'}}\ninventory: {{path: hosts.ini}}\nstate: {{dir: state}}\n"
        "log: {format: json}\n")
    done = runner.invoke(app, ["--config", str(config), "--log-level", "DEBUG", "sweep",
                               "--json"])
    assert done.exit_code == 1, done.output  # unknown data: a human must look
    report = json.loads(done.stdout)
    assert "HTTP 401" in report["source_error"]
    assert WRONG not in done.stdout and WRONG not in done.stderr


@pytest.mark.parametrize(("fields", "wanted"), [
    ({"username": USER}, "no password"),
    ({"password": PASSWORD}, "needs a user"),
    ({"username": USER, "password": PASSWORD, "bearer_token": TOKEN}, "not both"),
    ({"username": USER, "password": PASSWORD, "password_file": Path("/x")}, "not both"),
    ({"ca_file": Path("/etc/hostname")}, "only applies to an https url"),
    ({"username": USER, "password_file": Path("/nonexistent/secret")}, "cannot read"),
])
def test_auth_settings_that_do_not_fit_are_refused(fields: dict[str, object],
                                                   wanted: str) -> None:
    settings = PrometheusSettings(url="http://127.0.0.1:9", **fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=wanted) as err:
        connect(settings)
    assert PASSWORD not in str(err.value) and TOKEN not in str(err.value)


def test_a_password_in_the_url_of_a_prometheus_that_is_down_is_redacted() -> None:
    settings = PrometheusSettings(url=f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}",
                                  timeout_s=1)
    with pytest.raises(SourceUnavailable, match="did not answer") as err:
        observe(settings)
    assert f"http://{USER}:***@127.0.0.1" in str(err.value) and PASSWORD not in str(err.value)


def test_a_secret_file_others_can_read_is_used_with_a_warning(
        guarded: GuardedPrometheus, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loose = secret_file(tmp_path, PASSWORD)
    loose.chmod(0o644)
    settings = PrometheusSettings(url=guarded.url, username=USER, ca_file=guarded.ca,
                                  password_file=loose)
    with caplog.at_level(logging.WARNING):
        assert observe(settings)["a1"] is Health.FIRING
    assert "readable by other users" in caplog.text and PASSWORD not in caplog.text
