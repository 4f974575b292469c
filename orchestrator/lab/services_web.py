"""The lab's web hosts: nginx serving one HTTPS page on the host's own address, with a
certificate the lab's own CA issued, and the certificate faults that go with it.

Hooked into the lab with a line each: ``image`` (``PACKAGES``, ``customise``), ``hostconfig``
(``host_files``), ``fleet`` (``checks``) and ``faults`` (``stage``, ``INSTALL_CERT``,
``wait_served``). On the controller each web host has ``<lab>/hosts/<name>/tls/site.crt`` and
``site.key``, the certificate the lab wants it to serve, bound read-only at
``/etc/selfheal-lab-tls``; a oneshot unit copies it to ``/etc/nginx/tls`` at first boot, where
it is the host's own from then on (faults replace it, the ``tls_renew`` role renews it). The
lab CA (``<lab>/ca``) is bound read-only at ``/etc/selfheal-lab-ca`` so the role can issue from
it as a host would from an internal CA. The blackbox exporter that watches the certificates is
``services_blackbox``.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import PermanentError, TargetError
from orchestrator.lab import ca, procs, services_blackbox
from orchestrator.lab.layout import WEB, runs
from orchestrator.lab.paths import FILES_DIR, LabPaths
from orchestrator.lab.probe import resolve_address

# certbot: the tls_renew role's production issuer, tried on the lab against a local ACME
# server (pebble on the controller, tests/e2e/test_tls.py). python3-cffi-backend is certbot's
# (python3-cryptography's) through a virtual package, which debootstrap does not resolve.
PACKAGES = ("nginx-light", "openssl", "certbot", "python3-cffi-backend")
HTTPS_PORT = 443
CERT = "/etc/nginx/tls/site.crt"
KEY = "/etc/nginx/tls/site.key"
LAB_TLS_DIR = "/etc/selfheal-lab-tls"
LAB_CA_DIR = "/etc/selfheal-lab-ca"
SITE = "/etc/nginx/sites-enabled/selfheal-lab.conf"
PAGE_ROOT = "/var/www/selfheal-lab"
SEED_UNIT = "selfheal-lab-tls.service"
# Put the certificate the lab staged for the host in place and make nginx serve it.
INSTALL_CERT = ("sh", "-c", f"install -m 0600 {LAB_TLS_DIR}/site.key {KEY} && "
                f"install -m 0644 {LAB_TLS_DIR}/site.crt {CERT} && systemctl reload nginx.service")
_SITE = """\
# written by selfheal lab up: the host's HTTPS page, on its own address only
server {{
    listen {address}:{port} ssl;
    server_name {address};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root};
}}
"""


def ca_dir(paths: LabPaths) -> Path:
    """The lab CA's folder on the controller."""
    return paths.lab_dir / "ca"


def tls_dir(paths: LabPaths, name: str) -> Path:
    """The certificate the lab wants web host ``name`` to serve, on the controller."""
    return paths.host_dir(name) / "tls"


def customise(root: Path) -> None:
    """Image changes: no default site (it binds port 80 on every address), one worker, the
    seed unit and nginx drop-in from ``files/``, the page, and mount points for the binds."""
    (root / "etc/nginx/sites-enabled/default").unlink(missing_ok=True)
    nginx_conf = root / "etc/nginx/nginx.conf"
    nginx_conf.write_text(nginx_conf.read_text(encoding="utf-8").replace(
        "worker_processes auto;", "worker_processes 1;"), encoding="utf-8")
    units = root / "etc/systemd/system"
    shutil.copyfile(FILES_DIR / SEED_UNIT, units / SEED_UNIT)
    wants = units / "multi-user.target.wants" / SEED_UNIT
    wants.unlink(missing_ok=True)
    wants.symlink_to(f"/etc/systemd/system/{SEED_UNIT}")
    (units / "nginx.service.d").mkdir(exist_ok=True)
    shutil.copyfile(FILES_DIR / "nginx-selfheal-lab.conf",
                    units / "nginx.service.d" / "selfheal-lab.conf")
    page = root / PAGE_ROOT.lstrip("/")
    page.mkdir(parents=True, exist_ok=True)
    (page / "index.html").write_text("<!doctype html><title>selfheal lab</title><p>ok</p>\n",
                                     encoding="utf-8")
    for folder in (LAB_TLS_DIR, LAB_CA_DIR):
        (root / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / SITE.lstrip("/")).touch()


def site_config(address: str) -> str:
    """The nginx server block of the web host at ``address``."""
    return _SITE.format(address=address, port=HTTPS_PORT, cert=CERT, key=KEY, root=PAGE_ROOT)


def host_files(paths: LabPaths, name: str, address: str) -> list[str]:
    """For a web host: write its site, issue its first certificate (once per lab); the
    ``--bind-ro`` options. Other hosts get nothing."""
    if not runs(name, WEB):
        return []
    paths.host_dir(name).mkdir(parents=True, exist_ok=True)
    site = paths.host_dir(name) / "nginx-site.conf"
    site.write_text(site_config(address), encoding="utf-8")
    certs = tls_dir(paths, name)
    if not (certs / "site.crt").is_file():
        ca.issue(ca_dir(paths), address, ca.validity("valid", datetime.now(UTC)), certs)
    return [f"--bind-ro={site}:{SITE}", f"--bind-ro={certs}:{LAB_TLS_DIR}",
            f"--bind-ro={ca_dir(paths)}:{LAB_CA_DIR}"]


def _unverified() -> ssl.SSLContext:
    # the lab's own loopback hosts: we want to see an expired certificate, not refuse it
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https_ok(address: str, timeout: float = 2.0) -> bool:
    """True when nginx at ``address`` answers GET / over TLS with 200 (any certificate)."""
    connection = http.client.HTTPSConnection(address, HTTPS_PORT, timeout=timeout,
                                             context=_unverified())
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def served_certificate(address: str, timeout: float = 3.0) -> bytes:
    """The DER certificate nginx at ``address`` serves now."""
    with (socket.create_connection((address, HTTPS_PORT), timeout=timeout) as raw,
          _unverified().wrap_socket(raw) as tls):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise OSError(f"{address}:{HTTPS_PORT} sent no certificate")
    return der


def checks(name: str, address: str) -> dict[str, bool]:
    """Lab health checks of a web host (none for other hosts): nginx answers HTTPS, and the
    blackbox exporter reads its certificate."""
    if not runs(name, WEB):
        return {}
    return {"nginx": https_ok(address), "tls_probe": services_blackbox.probe_ok(address)}


def stage(kind: ca.Kind) -> Callable[[LabPaths, str], None]:
    """A fault step run on the controller: issue a ``kind`` certificate for ``host`` into its
    lab TLS folder, for ``INSTALL_CERT`` to put in place."""
    def step(paths: LabPaths, host: str) -> None:
        if not runs(host, WEB):
            raise TargetError(f"{host} runs no nginx; certificate faults need a web host "
                              "(vps1, vps5, ... in the lab layout)")
        ca.issue(ca_dir(paths), resolve_address(host), ca.validity(kind, datetime.now(UTC)),
                 tls_dir(paths, host))
    return step


def wait_served(paths: LabPaths, host: str, timeout: float = 15.0) -> None:
    """Wait until nginx on ``host`` serves the certificate the lab staged for it (a reload
    takes effect once nginx's new workers run); ``PermanentError`` after ``timeout``."""
    address = resolve_address(host)
    wanted = ssl.PEM_cert_to_DER_cert((tls_dir(paths, host) / "site.crt").read_text())

    def served() -> bool:
        try:
            return served_certificate(address) == wanted
        except OSError:
            return False

    if not procs.wait_until(served, timeout, interval=0.1):
        raise PermanentError(f"nginx on {host} did not serve the new certificate within "
                             f"{timeout:.0f} s; see journalctl -u nginx on the host")
