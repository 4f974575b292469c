"""``selfheal init DIR``: a settings file and a copy of the default rules to edit, in DIR."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from orchestrator.cli.common import JSON_OPTION, OK, console, emit_json, handle_errors
from orchestrator.errors import TargetError

SETTINGS = """\
# selfheal settings (written by `selfheal init`). Relative paths are taken from this file's
# folder. Every key can also be set as SELFHEAL_<GROUP>__<KEY>, e.g. SELFHEAL_PROMETHEUS__URL;
# secrets only that way or through *_file keys, never in this file.
prometheus:
  url: {prometheus_url}
  max_staleness_s: 60        # older samples are "unknown": selfheal never acts on them
inventory:
  path: {inventory}   # any inventory ansible-inventory reads
state:
  dir: {state_dir}     # SQLite incidents + audit chain, Ansible run artefacts
rules:
  dir: rules                 # the copy beside this file: review policy.yml before healing
serve:
  listen: 127.0.0.1:8080
  sweep_every_s: 2
  token_file: serve-token    # the bearer token Alertmanager sends (mode 0600); create it
log:
  level: INFO
  format: json
"""


@handle_errors
def init(
    directory: Path = typer.Argument(..., help="folder to write selfheal.yml and rules/ into"),
    prometheus_url: str = typer.Option("http://127.0.0.1:9090", "--prometheus-url"),
    inventory: str = typer.Option("/etc/ansible/hosts", "--inventory",
                                  help="your Ansible inventory"),
    state_dir: str = typer.Option("/var/lib/selfheal", "--state-dir"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write DIR/selfheal.yml and DIR/rules/ (a copy of the shipped rules); never overwrites.
    Then: `selfheal --config DIR/selfheal.yml sweep --dry-run`."""
    from orchestrator.resources import shipped

    settings, rules = directory / "selfheal.yml", directory / "rules"
    present = [str(p) for p in (settings, rules) if p.exists()]
    if present:
        raise TargetError(f"{', '.join(present)} already exist(s); selfheal init never "
                          "overwrites: pick an empty folder or move them aside")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(shipped("rules"), rules)
    settings.write_text(SETTINGS.format(prometheus_url=prometheus_url, inventory=inventory,
                                        state_dir=state_dir))
    if json_output:
        emit_json({"settings": str(settings), "rules": str(rules),
                   "rule_files": sorted(p.name for p in rules.iterdir())})
    else:
        console.print(f"wrote {settings} and {rules}/; next: set prometheus.url and "
                      f"inventory.path, review {rules}/policy.yml, then `selfheal --config "
                      f"{settings} sweep --dry-run`", highlight=False)
    raise typer.Exit(OK)
