"""Second hostile review of the Prometheus URL check in ``orchestrator.config``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.config import PrometheusSettings


@pytest.mark.parametrize("password", ["p@ss/word", "p@ss?word", "p@ss#word"])
def test_a_password_with_an_at_and_a_slash_is_never_shown(password: str) -> None:
    """The '@' check looks for an '@' after the host part only when the host part holds none;
    a password holding an '@' as well as / ? or # puts one there, so the URL is accepted, the
    host part ends inside the password, and ``redacted_url`` (logs, errors, --json, repr)
    shows the rest of it."""
    secret = password.split("@", 1)[1]
    try:
        settings = PrometheusSettings(url=f"http://ops:{password}@127.0.0.1:9090")
    except ValidationError as exc:  # refused: load_settings shows only the messages
        assert all(secret not in err["msg"] for err in exc.errors())
        return
    assert secret not in settings.redacted_url, settings.redacted_url
    assert secret not in repr(settings)


def test_an_at_in_the_path_is_not_taken_for_a_password() -> None:
    """A Prometheus behind a gateway whose path names a tenant by e-mail has no password in its
    URL; it is refused with a message about passwords."""
    url = "http://127.0.0.1:9090/tenants/ops@example.net/prometheus"
    assert PrometheusSettings(url=url).redacted_url == url
