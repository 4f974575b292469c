"""The ``selfheal`` command: the root Typer app joining one module per command group.

Exit codes for every command: 0 ok (healthy or healed), 1 needs a human (unknown data,
escalated, held, awaiting approval, refused by the guardrails, tampered audit log), 2 error (bad
input or configuration, a failed run, the controller lock busy).
"""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import audit, baseline, incidents, lab, notify
from orchestrator.cli.alert_rules import alert_rules
from orchestrator.cli.common import State
from orchestrator.cli.demo import demo
from orchestrator.cli.detect import detect_csv
from orchestrator.cli.diagnose import diagnose
from orchestrator.cli.init import init
from orchestrator.cli.kpi_report import report
from orchestrator.cli.remediate import remediate
from orchestrator.cli.serve import serve
from orchestrator.cli.sweep import sweep

app = typer.Typer(
    name="selfheal",
    help="Ansible-driven self-healing for VPS fleets watched by Prometheus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    config: Path | None = typer.Option(None, "--config", "-c", envvar="SELFHEAL_CONFIG",
                                       help="settings file (default ./selfheal.yml)"),
    log_level: str = typer.Option("", "--log-level", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    from orchestrator import logs
    from orchestrator.config import load_settings
    from orchestrator.errors import ConfigError

    State.config = config
    State._settings = None
    try:
        settings = load_settings(config)
    except ConfigError as exc:  # commands that need settings will report it; logs still work
        logs.setup(log_level or "INFO")
        State._settings = None
        typer.echo(f"warning: {exc}", err=True)
        return
    State._settings = settings
    logs.setup(log_level or settings.log.level, settings.log.format)


app.command("sweep")(sweep)
app.command("serve")(serve)
app.command("init")(init)
app.command("alert-rules")(alert_rules)
app.command("report")(report)
app.command("diagnose")(diagnose)
app.command("remediate")(remediate)
app.command("demo")(demo)
app.command("detect-csv")(detect_csv)
app.add_typer(incidents.app, name="incidents")
app.add_typer(audit.app, name="audit")
app.add_typer(lab.app, name="lab")
app.add_typer(baseline.app, name="baseline")
app.add_typer(notify.app, name="notify")


def main() -> None:
    app()
