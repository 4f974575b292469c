"""Anomaly detection: learned per-host baselines that beat fixed thresholds.

Called by the sweep (``FleetDetector`` then ``combine``), ``selfheal detect-csv``
(``score_series``), ``selfheal baseline train`` and ``benchmarks/detection.py``. Pure numpy; the
rules parser takes YAML text; scikit-learn is imported only when a forest is fitted.
"""

from orchestrator.core.detect.combiner import Candidate, combine
from orchestrator.core.detect.fleet import DETECTORS, LEARNED, FleetDetector
from orchestrator.core.detect.rules import DetectionRules, parse_detection
from orchestrator.core.detect.stream import BaselineParams, BaselineState, score_series

__all__ = [
    "DETECTORS", "LEARNED", "BaselineParams", "BaselineState", "Candidate", "DetectionRules",
    "FleetDetector", "combine", "parse_detection", "score_series",
]
