"""A local ACME server for the lab: pebble (Let's Encrypt's test server, Debian's ``pebble``) on
the controller, for certbot on the web hosts, the ``tls_renew`` role's production issuer.

Called by the tests that renew a certbot lineage (``tests/e2e/test_tls.py``: ``start`` and
``stop``) and by ``fleet.down`` (``stop``, so a test that died leaves no server behind); ``lab
up`` does not start it, since only those tests need it. It listens on ``<lab net>.254:14000``,
inside the lab's own /24 like the blackbox exporter, with a certificate the lab CA issues for
that address: certbot on a host trusts it through ``REQUESTS_CA_BUNDLE`` set to the lab CA that
is bound into every web host (``services_web.LAB_CA_DIR``), never by skipping verification.

Lab settings (environment): ``PEBBLE_VA_ALWAYS_VALID=1`` marks every challenge valid without
fetching it (the hosts' ACME names resolve nowhere, so the lab exercises certbot's issuance and
renewal, not the HTTP-01 challenge itself); ``PEBBLE_VA_NOSLEEP=1`` and
``PEBBLE_WFE_NONCEREJECT=0`` drop pebble's random delays and its 5 % of nonces refused on
purpose, so a run does not depend on luck. The certificates it issues live ``validity_s``
seconds (pebble's ``certificateValidityPeriod``). Pebble keeps its accounts in memory: a
restarted server no longer knows the accounts certbot registered with the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.errors import PermanentError
from orchestrator.lab import ca, procs, services_web
from orchestrator.lab.paths import ADDRESS_PREFIX, LabPaths

BINARY = "/usr/bin/pebble"
ADDRESS = f"{ADDRESS_PREFIX}254"
PORT = 14000
DIRECTORY = f"https://{ADDRESS}:{PORT}/dir"
# The lab CA as the web hosts see it: what certbot there trusts for DIRECTORY.
HOST_CA_BUNDLE = f"{services_web.LAB_CA_DIR}/ca.crt"
ENVIRONMENT = {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1",
               "PEBBLE_WFE_NONCEREJECT": "0"}


def folder(paths: LabPaths) -> Path:
    return paths.lab_dir / "acme"


def marker(paths: LabPaths) -> str:
    """The string in the command line that marks the lab's own pebble."""
    return str(folder(paths) / "pebble.json")


def config(tls_dir: Path, validity_s: int) -> dict[str, object]:
    """Pebble's configuration: ACME on DIRECTORY with the certificate in ``tls_dir``, its
    management API on the next port, certificates valid ``validity_s`` seconds."""
    if validity_s <= 0:
        raise PermanentError(f"an ACME certificate validity must be positive, not {validity_s} s")
    return {"pebble": {
        "listenAddress": f"{ADDRESS}:{PORT}",
        "managementListenAddress": f"{ADDRESS}:{PORT + 1}",
        "certificate": str(tls_dir / "site.crt"),
        "privateKey": str(tls_dir / "site.key"),
        "httpPort": 5002,  # challenge ports: never used with PEBBLE_VA_ALWAYS_VALID
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        "certificateValidityPeriod": validity_s,
    }}


def answers(paths: LabPaths) -> bool:
    """True when DIRECTORY answers over TLS verified against the lab CA."""
    context = ssl.create_default_context(cafile=str(ca.ca_files(services_web.ca_dir(paths))[0]))
    try:
        with urllib.request.urlopen(DIRECTORY, timeout=2, context=context) as response:
            return "newOrder" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def start(paths: LabPaths, validity_s: int, timeout: float = 15.0) -> int:
    """Start a fresh pebble issuing ``validity_s``-second certificates (ending one that runs
    already: its accounts and settings are not this caller's); its PID once DIRECTORY answers."""
    if shutil.which(BINARY) is None:
        raise PermanentError(f"{BINARY} is missing: make deps (apt-get install -y pebble)")
    stop(paths)
    now = datetime.now(UTC)
    tls_dir = folder(paths) / "tls"
    ca.issue(services_web.ca_dir(paths), ADDRESS,
             ca.Validity(now - timedelta(hours=1), now + timedelta(days=1)), tls_dir)
    marker_file = Path(marker(paths))
    marker_file.write_text(json.dumps(config(tls_dir, validity_s), indent=2) + "\n",
                           encoding="utf-8")
    pid = procs.spawn([BINARY, "-config", str(marker_file)], folder(paths) / "pebble.log",
                      env={**os.environ, **ENVIRONMENT})
    if not procs.wait_until(lambda: answers(paths), timeout):
        stop(paths)
        raise PermanentError(f"pebble did not answer on {DIRECTORY} within {timeout:.0f} s; "
                             f"see {folder(paths) / 'pebble.log'}")
    return pid


def stop(paths: LabPaths) -> None:
    """End every pebble started with the lab's config."""
    procs.terminate(procs.find(marker(paths)), marker(paths), timeout=10.0)
