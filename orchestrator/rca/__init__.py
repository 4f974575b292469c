"""Root-cause analysis: the context of an incident, the rules' report, and an optional model.

``stage.RcaStage`` is the entry point (``selfheal diagnose`` and the sweep's ``explain`` hook,
wired in ``orchestrator.wiring.rca_for``); ``mask`` keeps untrusted text as data; ``bind`` holds
a model's answer to the catalog. See docs/rca.md.
"""
