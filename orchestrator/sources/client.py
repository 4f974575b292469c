"""The one place a Prometheus HTTP client is built: credentials, CA file, and safe error text.

Called by ``sources.prometheus.connect`` (the sweep's instant queries, the detection stage) and
``connect_range`` (range queries: baseline training, root-cause analysis). Basic auth
(``username`` with ``password`` or ``password_file``, or a ``user:password@`` in the URL), a
bearer token (``bearer_token`` or ``bearer_token_file``) and a CA bundle (``ca_file``) come from
``PrometheusSettings``; secret files are read here, once per client. Every message built here
names the settings to fix and holds no secret: the URL is shown redacted and any secret text is
replaced by ``***``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator.config import PrometheusSettings
from orchestrator.errors import ConfigError

log = logging.getLogger(__name__)
CHECK_URL = "check that it runs and that prometheus.url (SELFHEAL_PROMETHEUS__URL) points at it"
CHECK_AUTH = ("check prometheus.username with password_file (or SELFHEAL_PROMETHEUS__PASSWORD), "
              "or bearer_token_file (or SELFHEAL_PROMETHEUS__BEARER_TOKEN); see "
              "docs/prometheus-auth.md")


@dataclass(frozen=True)
class Access:
    """How to reach one Prometheus: the URL without credentials, and what to send with it."""

    url: str
    shown: str
    auth: tuple[str, str] | None
    headers: dict[str, str] | None
    verify: bool | str
    secrets: tuple[str, ...]

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def explain(self, exc: Exception, doing: str) -> str:
        """Why a request failed, for people: the cause, the settings to check, no secret."""
        detail = self.scrub(f"{type(exc).__name__}: {str(exc)[:200]}")
        for status in ("401", "403"):
            if f"Status Code {status}" in str(exc):
                return (f"Prometheus at {self.shown} refused the credentials (HTTP {status}) for "
                        f"{doing}; {CHECK_AUTH}")
        if "SSLError" in detail or "CERTIFICATE_VERIFY_FAILED" in detail:
            return (f"Prometheus at {self.shown}: TLS verification failed for {doing} ({detail}); "
                    "set prometheus.ca_file to the CA bundle that signed its certificate")
        return f"Prometheus at {self.shown} did not answer {doing}: {detail}; {CHECK_URL}"


def _secret_file(path: Path, setting: str) -> str:
    try:
        secret = path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"prometheus.{setting}: cannot read {path} ({exc.strerror}); write the "
                          "secret there (readable by this user only) or unset the setting") from exc
    if not secret:
        raise ConfigError(f"prometheus.{setting}: {path} is empty; write the secret there")
    if path.stat().st_mode & 0o077:
        log.warning("secret file is readable by other users; chmod 600 it",
                    extra={"setting": f"prometheus.{setting}", "file": str(path)})
    return secret


def access(settings: PrometheusSettings) -> Access:
    """Check the auth settings fit together and read the secrets; ConfigError says what to fix."""
    parts = urlsplit(settings.url)
    s = settings
    if s.password is not None and s.password_file is not None:
        raise ConfigError("prometheus: set password (SELFHEAL_PROMETHEUS__PASSWORD) or "
                          "password_file, not both")
    if s.bearer_token is not None and s.bearer_token_file is not None:
        raise ConfigError("prometheus: set bearer_token (SELFHEAL_PROMETHEUS__BEARER_TOKEN) or "
                          "bearer_token_file, not both")
    has_password = s.password is not None or s.password_file is not None
    has_token = s.bearer_token is not None or s.bearer_token_file is not None
    if parts.username is not None and (s.username is not None or has_password):
        raise ConfigError("prometheus: url holds user:password and username/password are set "
                          "too; keep one (username with password_file keeps it out of the URL)")
    if parts.username is not None and parts.password is None:
        raise ConfigError("prometheus.url holds a user but no password; set prometheus.username "
                          "and password_file instead")
    if has_password and s.username is None:
        raise ConfigError("prometheus: a password needs a user; set prometheus.username")
    if s.username is not None and not has_password:
        raise ConfigError("prometheus.username is set but no password; set "
                          "prometheus.password_file or SELFHEAL_PROMETHEUS__PASSWORD")
    if (s.username is not None or parts.username is not None) and has_token:
        raise ConfigError("prometheus: choose basic auth (username) or a bearer token, not both")
    if s.ca_file is not None:
        if parts.scheme != "https":
            raise ConfigError("prometheus.ca_file only applies to an https url; use https:// "
                              "or unset ca_file")
        if not s.ca_file.is_file():
            raise ConfigError(f"prometheus.ca_file: {s.ca_file} is not a file; give the PEM CA "
                              "bundle that signed Prometheus's certificate")
    auth: tuple[str, str] | None = None
    headers: dict[str, str] | None = None
    secrets: list[str] = []
    url = settings.url
    if parts.username is not None and parts.password is not None:
        auth = (unquote(parts.username), unquote(parts.password))
        secrets += [parts.password, auth[1]]
        url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    elif s.username is not None:
        password = (s.password.get_secret_value() if s.password is not None
                    else _secret_file(s.password_file, "password_file"))  # type: ignore[arg-type]
        auth = (s.username, password)
        secrets.append(password)
    if has_token:
        token = (s.bearer_token.get_secret_value() if s.bearer_token is not None
                 else _secret_file(s.bearer_token_file, "bearer_token_file"))  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {token}"}
        secrets.append(token)
    verify: bool | str = str(s.ca_file) if s.ca_file is not None else True
    return Access(url=url, shown=settings.redacted_url, auth=auth, headers=headers,
                  verify=verify, secrets=tuple(sorted({x for x in secrets if x}, key=len,
                                                      reverse=True)))


def open_client(settings: PrometheusSettings, retry: Any, timeout_s: float) -> tuple[Any, Access]:
    """A ``PrometheusConnect`` that authenticates as configured, and its ``Access``."""
    import requests
    from prometheus_api_client import PrometheusConnect

    how = access(settings)
    session = requests.Session()
    session.verify = how.verify  # the client sends its session's verify with every request
    client = PrometheusConnect(url=how.url, headers=how.headers, auth=how.auth, retry=retry,
                               session=session, timeout=timeout_s)
    return client, how
