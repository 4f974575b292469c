"""``to_jsonable``: records with frozen mappings and unknown (non-finite) values print as JSON."""

from __future__ import annotations

import json
import math
from types import MappingProxyType

from orchestrator.cli.common import to_jsonable
from orchestrator.models import Finding, Health


def test_a_finding_with_frozen_labels_and_a_nan_value_is_plain_json() -> None:
    finding = Finding(host="db1", signal="load", health=Health.UNKNOWN, observed_at=1.0,
                      value=math.nan, labels=MappingProxyType({"instance": "10.0.0.1:9100"}))
    data = to_jsonable({"findings": (finding,), "inf": math.inf})
    assert data == {"findings": [{
        "host": "db1", "signal": "load", "health": "unknown", "observed_at": 1.0, "value": None,
        "confidence": 1.0, "source": "rule", "evidence": [],
        "labels": {"instance": "10.0.0.1:9100"}, "absent": False}], "inf": None}
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN or Infinity tokens
