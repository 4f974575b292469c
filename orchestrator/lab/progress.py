"""The progress callback the lab reports through, so the CLI can draw it and tests can ignore it.

``orchestrator.lab.image`` and ``orchestrator.lab.fleet`` call ``report(progress, ...)``; the CLI
passes a function that updates a rich progress bar. ``fraction`` is the share of the current step
done (0..1), or None when it cannot be estimated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float | None], None]


def report(progress: ProgressFn | None, message: str, fraction: float | None = None) -> None:
    """Log ``message`` and hand it to ``progress`` when one was given."""
    log.debug("lab: %s", message)
    if progress is not None:
        progress(message, fraction)
