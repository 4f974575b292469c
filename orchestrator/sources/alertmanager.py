"""Alertmanager's webhook payload (version 4, as Alertmanager 0.25 sends it) and its alerts.

Called by ``orchestrator.intake`` for every POST to ``selfheal serve``'s alert endpoints. The
payload is validated by pydantic (a clear 422 names the field); each alert is then mapped to an
inventory host by its ``instance`` label's host part (as for Prometheus series), else by a
``host`` label naming an inventory host. An alert naming no inventory host is refused, never
guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from orchestrator.models import Alert
from orchestrator.sources.prometheus import instance_host

_Text = Annotated[str, StringConstraints(max_length=4096)]
_Labels = Annotated[dict[Annotated[str, StringConstraints(max_length=256)], _Text],
                    Field(max_length=128)]
# Alertmanager's fingerprints are 16 hex digits; allow any short token, nothing else
_Fingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z_-]{1,64}$")]


class WebhookAlert(BaseModel):
    """One alert of the payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: _Labels
    annotations: _Labels = Field(default_factory=dict)
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: _Text = ""
    fingerprint: _Fingerprint


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body, version 4."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    groupKey: _Text = ""
    truncatedAlerts: int = Field(0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: _Text = ""
    groupLabels: _Labels = Field(default_factory=dict)
    commonLabels: _Labels = Field(default_factory=dict)
    commonAnnotations: _Labels = Field(default_factory=dict)
    externalURL: _Text = ""
    alerts: list[WebhookAlert] = Field(max_length=10_000)


@dataclass(frozen=True)
class Mapped:
    """The payload's alerts that name an inventory host, and why the others were refused."""

    alerts: tuple[Alert, ...]
    refused: tuple[str, ...]


def _epoch(moment: datetime | None) -> float | None:
    # Alertmanager sends endsAt "0001-01-01T00:00:00Z" for "not ended"; before 1970 means none
    if moment is None:
        return None
    seconds = moment.timestamp()
    return seconds if seconds > 0 else None


def host_of(labels: Mapping[str, str], by_address: Mapping[str, str],
            names: frozenset[str]) -> str | None:
    """The inventory host an alert's labels name, or None."""
    instance = labels.get("instance")
    if instance:
        address = instance_host(instance)
        if address is not None and address in by_address:
            return by_address[address]
    host = labels.get("host")
    if host in names:
        return host
    return by_address.get(host) if host else None


def map_alerts(payload: WebhookPayload, by_address: Mapping[str, str],
               names: frozenset[str]) -> Mapped:
    """Each alert as an ``Alert`` on its inventory host; the rest refused with the reason."""
    alerts: list[Alert] = []
    refused: list[str] = []
    for alert in payload.alerts:
        name = alert.labels.get("alertname", "")
        host = host_of(alert.labels, by_address, names)
        if host is None:
            said = alert.labels.get("instance") or alert.labels.get("host")
            refused.append(f"alert {name or '?'} ({alert.fingerprint}): "
                           + (f"{said[:80]!r} is not an inventory host" if said else
                              "names no host (no instance or host label)"))
            continue
        starts = _epoch(alert.startsAt)
        alerts.append(Alert(
            fingerprint=alert.fingerprint, status=alert.status,
            starts_at=starts if starts is not None else 0.0, ends_at=_epoch(alert.endsAt),
            host=host, fault=alert.labels.get("fault") or name or "unnamed",
            labels=dict(alert.labels)))
    return Mapped(tuple(alerts), tuple(refused))
