"""Settings grouped by concern, read from ``selfheal.yml`` and ``SELFHEAL_*`` environment variables.

Called by the CLI once per command (``load_settings``) and handed down; nothing else reads the
environment. Precedence: ``SELFHEAL_*`` variables (nested with ``__``, e.g.
``SELFHEAL_PROMETHEUS__URL``) over the YAML file over the defaults below. The file is the one
named by ``--config``, else ``$SELFHEAL_CONFIG``, else ``./selfheal.yml`` when it exists.
Relative paths in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.errors import ConfigError
from orchestrator.resources import shipped

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout (tests, lab, benchmarks)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "selfheal"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrometheusSettings(_Group):
    """Where the fleet's metrics live, and how to prove who we are to it.

    Secrets come from a file (``password_file``, ``bearer_token_file``: mode 0600, read on each
    start of a controller) or from the environment (``SELFHEAL_PROMETHEUS__PASSWORD``,
    ``SELFHEAL_PROMETHEUS__BEARER_TOKEN``); never write them into selfheal.yml. They never appear
    in logs, errors or ``--json``; a ``user:password@`` in ``url`` is redacted wherever the URL is
    shown. See docs/prometheus-auth.md.
    """

    url: str = Field("http://127.0.0.1:9090", description="Prometheus base URL (http or https)")
    timeout_s: float = Field(5.0, gt=0, description="per-request timeout")
    max_staleness_s: float = Field(
        30.0, gt=0, description="a sample older than this is 'unknown', never 'healthy'"
    )
    instance_label: str = Field("instance", description="label naming a scrape target")
    username: str | None = Field(None, min_length=1, description="HTTP basic auth user")
    password: SecretStr | None = Field(
        None, description="basic auth password; set it through SELFHEAL_PROMETHEUS__PASSWORD")
    password_file: Path | None = Field(None, description="file holding the basic auth password")
    bearer_token: SecretStr | None = Field(
        None, description="bearer token; set it through SELFHEAL_PROMETHEUS__BEARER_TOKEN")
    bearer_token_file: Path | None = Field(None, description="file holding the bearer token")
    ca_file: Path | None = Field(
        None, description="PEM CA bundle that signed an https Prometheus's certificate")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("write http://HOST:PORT or https://HOST:PORT")
        # a password holding / ? or # ends the host part early: the rest of it would be shown
        # unredacted. Spot it without echoing the URL: the host part's port is not a number, or
        # a user:password@ host part is followed by another '@'.
        rest = v.partition("://")[2]
        after = rest[len(parts.netloc):]
        try:
            parts.port  # noqa: B018 (urlsplit checks the port when it is read)
        except ValueError:
            bad = True
        else:
            bad = "@" in parts.netloc and "@" in after
        if bad:
            raise ValueError("the URL's host part is not [user[:password]@]HOST[:PORT] (a "
                             "password with / ? # in it?): percent-encode it, or better, use "
                             "password_file")
        return v

    @property
    def redacted_url(self) -> str:
        """``url`` as shown in messages: the password of a ``user:password@`` is ``***``."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()

    def __repr_args__(self) -> Any:  # a user:password in the URL stays out of reprs and logs
        for key, value in super().__repr_args__():
            yield key, (self.redacted_url if key == "url" else value)


class InventorySettings(_Group):
    """The team's own Ansible inventory (anything ``ansible-inventory`` reads)."""

    path: Path | None = Field(None, description="inventory file, folder or script")
    prometheus_host_var: str = Field(
        "selfheal_prometheus_host",
        description="host variable naming the host part of its Prometheus instance label; "
        "defaults to ansible_host, then the inventory name",
    )


class AnsibleSettings(_Group):
    """How remediations run."""

    project_dir: Path = Field(default_factory=lambda: shipped("ansible"),
                              description="ansible.cfg, roles, playbooks; default: the ones "
                              "shipped with selfheal")
    forks: int = Field(10, ge=1)
    timeout_s: float = Field(300.0, gt=0, description="a play running longer is cancelled")


class StateSettings(_Group):
    """Where incidents, the audit chain and run artefacts are kept."""

    dir: Path = Field(default_factory=_default_state_dir)
    url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under dir")
    audit_key_file: Path | None = Field(
        None, description="secret keying the audit chain; default dir/audit.key. Keep it where "
        "whoever can write the database cannot read it")

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.dir / "audit.key"

    @property
    def database_url(self) -> str:
        return self.url or f"sqlite:///{self.dir / 'selfheal.db'}"


class RulesSettings(_Group):
    """The YAML the ops team edits."""

    dir: Path = Field(default_factory=lambda: shipped("rules"),
                      description="default: the rules shipped with selfheal (`selfheal init` "
                      "copies them to edit)")


class NotifySettings(_Group):
    """Who is told when an incident needs a human (escalated, awaiting approval, rolled back,
    held): apprise URLs, e.g. ``slack://T/B/C``, ``jsons://hooks.example.net/selfheal``,
    ``mailtos://user:password@mail.example.net?to=ops@example.net``."""

    urls: list[SecretStr] = Field(
        default_factory=list, description="apprise URLs; they may hold tokens, so prefer "
        "urls_file or SELFHEAL_NOTIFY__URLS (a JSON list) over the settings file")
    urls_file: Path | None = Field(
        None, description="file with one apprise URL a line (# comments); keep it mode 0600")
    timeout_s: float = Field(
        10.0, gt=0, le=120, description="longest a notification may hold up a sweep")


class HealthSettings(_Group):
    """selfheal's own health for Prometheus, written after each sweep."""

    textfile_path: Path | None = Field(
        None, description="a *.prom file in node_exporter's --collector.textfile.directory; "
        "unset writes nothing")

    @field_validator("textfile_path")
    @classmethod
    def _prom_suffix(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix != ".prom":
            raise ValueError(f"{value}: node_exporter reads only files ending in .prom; "
                             "name it e.g. selfheal.prom")
        return value


class ServeSettings(_Group):
    """``selfheal serve``: Alertmanager's webhook receiver with the sweep loop inside it.

    The bearer token Alertmanager sends (its receiver's ``http_config.authorization``) comes from
    ``token_file`` (mode 0600) or ``SELFHEAL_SERVE__TOKEN``; never write it into selfheal.yml.
    """

    listen: str = Field("127.0.0.1:8080", description="HOST:PORT to listen on")
    sweep_every_s: float = Field(2.0, gt=0, description="a sweep at least this often")
    token: SecretStr | None = Field(
        None, description="webhook bearer token; set it through SELFHEAL_SERVE__TOKEN")
    token_file: Path | None = Field(None, description="file holding the webhook bearer token")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="a larger webhook body is refused with 413")
    batch_window_s: float = Field(
        1.0, ge=0, le=60, description="/alert/batch waits this long to merge alerts of one "
        "root cause into one sweep")
    alert_recheck_s: float = Field(
        30.0, ge=0, le=600, description="a host whose alert still fires but whose sweep found "
        "nothing is swept again every second for this long (the controller's Prometheus may "
        "not show yet what fired the alert); 0: one sweep per alert")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
        return v

    def bearer_token(self) -> str:
        """The token, from the environment or ``token_file``; ConfigError when neither gives
        one (serve never runs unauthenticated)."""
        if self.token is not None and self.token.get_secret_value().strip():
            return self.token.get_secret_value().strip()
        if self.token_file is not None:
            try:
                text = self.token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"serve.token_file {self.token_file}: cannot read it "
                                  f"({exc.strerror}); fix the path or its mode") from exc
            if text:
                return text
            raise ConfigError(f"serve.token_file {self.token_file} is empty; write the token "
                              "Alertmanager sends into it")
        raise ConfigError("serve needs a bearer token: set serve.token_file (a file holding "
                          "it, mode 0600) or SELFHEAL_SERVE__TOKEN")


class LlmSettings(_Group):
    """The optional model that explains a diagnosis (``pip install selfheal[llm]``).

    Unset ``model``: rules alone, fully working, and litellm is never imported. The model only
    proposes: its answer must name a catalog remediation with parameters that pass the catalog's
    patterns, it can raise a risk tier but never lower it, and a disagreement with the rules
    needs a human's approval (docs/rca.md).
    """

    model: str | None = Field(
        None, min_length=1, description="a litellm model string, e.g. openai/gpt-4o-mini or "
        "ollama/llama3.1; unset: rules alone")
    api_base: str | None = Field(None, description="the model server's base URL, if not the "
                                 "provider's default (a local OpenAI-compatible server)")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="name of the environment variable holding the API key (never the key)")
    timeout_s: float = Field(20.0, gt=0, le=300, description="one call's deadline; a slower "
                             "model is an error and the rules answer alone")
    temperature: float = Field(0.0, ge=0, le=0.3, description="sampling temperature (<= 0.3)")

    @field_validator("api_base")
    @classmethod
    def _http_base(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("write http://HOST:PORT[/PATH] or https://...")
            if parts.username or parts.password:
                raise ValueError("no credentials in api_base; name the key's variable in "
                                 "llm.api_key_env")
        return v


class RcaSettings(_Group):
    """Root-cause analysis: the context gathered for an incident and where the stage runs."""

    in_sweep: bool = Field(True, description="explain each incident a sweep opened, after "
                           "its fixes ran (never before a fix); a service does it beside its "
                           "sweeps, a one-shot sweep waits for it")
    deadline_s: float = Field(40.0, gt=0, le=600, description="longest an incident's analysis "
                              "may take from the end of the sweep's fixes, queued or running; "
                              "past it the rules' report is kept alone")
    history_s: float = Field(7200.0, ge=300, description="metric timeline window")
    points: int = Field(24, ge=4, le=240, description="points kept per signal's timeline")
    journal_minutes: int = Field(30, ge=1, le=1440, description="journal warnings from the "
                                 "last N minutes")
    host_facts: bool = Field(True, description="run the read-only `diagnose` role on the host")


class LogSettings(_Group):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "console"


class Settings(BaseSettings):
    """All settings; one group per concern."""

    model_config = SettingsConfigDict(
        env_prefix="SELFHEAL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    prometheus: PrometheusSettings = PrometheusSettings()
    inventory: InventorySettings = InventorySettings()
    ansible: AnsibleSettings = AnsibleSettings()
    state: StateSettings = StateSettings()
    rules: RulesSettings = RulesSettings()
    log: LogSettings = LogSettings()
    notify: NotifySettings = NotifySettings()
    health: HealthSettings = HealthSettings()
    serve: ServeSettings = ServeSettings()
    llm: LlmSettings = LlmSettings()
    rca: RcaSettings = RcaSettings()
    source_file: Path | None = Field(None, exclude=True)


def config_path(explicit: Path | None) -> Path | None:
    """The settings file to read, or None when there is none (defaults and env only)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist; pass an existing file")
        return explicit
    env = os.environ.get("SELFHEAL_CONFIG")
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"SELFHEAL_CONFIG={env} does not exist; unset it or fix the path")
        return Path(env)
    local = Path("selfheal.yml")
    return local if local.is_file() else None


def _absolutise(data: dict[str, Any], base: Path) -> None:
    for group, key in (("inventory", "path"), ("ansible", "project_dir"), ("state", "dir"),
                       ("state", "audit_key_file"), ("rules", "dir"),
                       ("prometheus", "password_file"), ("prometheus", "bearer_token_file"),
                       ("prometheus", "ca_file"), ("notify", "urls_file"),
                       ("health", "textfile_path"), ("serve", "token_file")):
        section = data.get(group)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            p = Path(section[key]).expanduser()
            section[key] = str(p if p.is_absolute() else (base / p).resolve())


def load_settings(explicit: Path | None = None) -> Settings:
    """Read settings; every problem becomes a ConfigError naming the file and the field."""
    path = config_path(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of setting groups at the top level")
        data = loaded
        _absolutise(data, path.resolve().parent)
    try:
        # Explicit init values would beat the environment; merge so env wins over the file.
        settings = Settings()
        merged = _deep_merge(data, settings.model_dump(exclude_unset=True))
        return Settings(**merged, source_file=path)
    except ValidationError as exc:
        where = str(path) if path else "SELFHEAL_* environment"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}: invalid settings: {problems}") from exc


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
