"""Alertmanager's webhook payload (version 4, as Alertmanager 0.25 sends it) and its alerts.

Called by ``orchestrator.intake`` for every POST to ``selfheal serve``'s alert endpoints. The
payload is validated by pydantic (a clear 422 names the field); each alert is then mapped to an
inventory host by its ``instance`` label's host part (as for Prometheus series), else by a
``host`` label naming an inventory host. An alert naming no inventory host is refused, never
guessed at. Its fault is the catalog fault its ``fault`` label or its alertname names (the
rules ``selfheal alert-rules`` writes carry both); its subject comes from the labels the fault's
lead signal tells subjects apart by (``unit``, ``mountpoint``), as for an incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from orchestrator.alert_rules import alert_name
from orchestrator.core.faults import FaultRules
from orchestrator.models import Alert
from orchestrator.sources.prometheus import instance_host

_Text = Annotated[str, StringConstraints(max_length=4096)]
_Labels = Annotated[dict[Annotated[str, StringConstraints(max_length=256)], _Text],
                    Field(max_length=128)]
# Alertmanager's fingerprints are 16 hex digits; allow any short token, nothing else
MAX_FAULT = 128  # the alerts table's fault column
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


def fault_of(labels: Mapping[str, str], faults: FaultRules) -> tuple[str, str]:
    """The catalog fault an alert names (its ``fault`` label, else its alertname as a fault
    name or as ``selfheal alert-rules`` names it) and its subject; an alert of another rule
    keeps its own name and no subject: it still wakes a sweep, which judges the metrics."""
    named = labels.get("fault") or ""
    alertname = labels.get("alertname") or ""
    by_alert = {alert_name(name): name for name in faults.faults}
    fault = next((n for n in (named, alertname, by_alert.get(alertname, ""))
                  if n in faults.faults), "")
    if not fault:  # kept to log and group by: as long as the store's fault column allows
        return (named or alertname or "unnamed")[:MAX_FAULT], ""
    lead = faults.signals[faults.faults[fault].lead]
    if not lead.subject or any(not labels.get(key) for key in lead.subject):
        return fault, ""  # host-wide, or the alert's rule dropped the labels that tell which
    return fault, lead.subject_of(labels)


def map_alerts(payload: WebhookPayload, by_address: Mapping[str, str],
               names: frozenset[str], faults: FaultRules) -> Mapped:
    """Each alert as an ``Alert`` on its inventory host, with its fault and subject; the rest
    refused with the reason."""
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
        fault, subject = fault_of(alert.labels, faults)
        alerts.append(Alert(
            fingerprint=alert.fingerprint, status=alert.status,
            starts_at=starts if starts is not None else 0.0, ends_at=_epoch(alert.endsAt),
            host=host, fault=fault, labels=dict(alert.labels), subject=subject))
    return Mapped(tuple(alerts), tuple(refused))
