"""One error tree for selfheal; every layer raises from here, the CLI maps them to exit codes.

    SelfhealError                 root; carries a message that says what was wrong and how to fix it
    ├── PermanentError            retrying will not help: fix the input first
    │   ├── ConfigError           selfheal.yml / SELFHEAL_* settings are invalid
    │   ├── RulesError            a rules/*.yml file is invalid (names file, line and fix)
    │   ├── InventoryError        the Ansible inventory cannot be read, or a host is not in it
    │   ├── UnsafeValueError      a value from outside (label, annotation, LLM text) was refused
    │   ├── TargetError           an empty or unknown target set (never "all hosts")
    │   ├── AuditChainError       the audit chain does not verify
    │   └── StoreSchemaError      the store was made by an older selfheal and cannot be upgraded
    └── TemporaryError            worth retrying after ``delay`` seconds
        ├── SourceUnavailable     Prometheus (or another source) did not answer
        ├── ControllerBusy        another sweep holds the controller lock
        └── StoreUnavailable      the incident store could not be written (after retries)

Callers catch ``TemporaryError`` to retry later and let ``PermanentError`` surface to a human.
"""

from __future__ import annotations


class SelfhealError(Exception):
    """Root of every error selfheal raises on purpose."""


class PermanentError(SelfhealError):
    """Retrying will not help; the input or the environment must be fixed first."""


class TemporaryError(SelfhealError):
    """Worth retrying after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class ConfigError(PermanentError):
    """selfheal.yml or a SELFHEAL_* variable is invalid."""


class RulesError(PermanentError):
    """A rules file is invalid; the message names the file, the line and the fix."""


class InventoryError(PermanentError):
    """The Ansible inventory cannot be read, or a host is not in it."""


class UnsafeValueError(PermanentError):
    """A value that came from outside was refused before it could reach Ansible."""


class TargetError(PermanentError):
    """An empty or unknown target set; selfheal never falls back to "all hosts"."""


class AuditChainError(PermanentError):
    """The audit chain does not verify: a record was edited, deleted or reordered."""


class StoreSchemaError(PermanentError):
    """The store lacks something this selfheal needs and cannot add in place."""


class SourceUnavailable(TemporaryError):
    """A metrics source (Prometheus) did not answer or answered with an error."""


class ControllerBusy(TemporaryError):
    """Another sweep holds the controller lock."""


class StoreUnavailable(TemporaryError):
    """The incident store could not be written, even after retrying."""
