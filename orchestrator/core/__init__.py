"""Pure decisions of the loop: no I/O at all (``tests/unit/core/test_no_io.py`` enforces it).

Modules: ``rulefile`` (YAML text with line numbers), ``catalog`` (remediations), ``faults``
(signals and fault rules), ``policy`` (guardrails), ``diagnose``, ``plan``, ``lifecycle``
(incident state machine), ``detect`` (anomaly detectors).
"""
