"""The lab's own certificate authority: one CA per lab, and the host certificates it issues.

Called by ``services_web`` (a valid certificate for each web host at ``lab up``) and by the
``tls_expiry`` / ``tls_expired`` faults (a certificate about to expire, or already expired, and a
fresh one to clear them). Everything is the machine's ``openssl`` run with argument lists, on the
controller: the CA key and certificate stay under ``<lab>/ca`` (bound read-only into the web
hosts, where the ``tls_renew`` role issues from it). ``openssl ca`` is used rather than
``openssl x509 -req`` because only it sets both ends of the validity period (an expired
certificate needs a start date in the past), through a throw-away database in a temp folder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from orchestrator.errors import PermanentError

CA_DAYS = 3650
CURVE = "prime256v1"
Kind = Literal["valid", "expiring", "expired"]
# A lab certificate lives 90 days, as an ACME one does. "expiring" has 2 days left: inside the
# 7-day warning window of rules/faults.yml; "expired" ended 2 days ago.
_WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "valid": (timedelta(hours=-1), timedelta(days=90)),
    "expiring": (timedelta(days=-88), timedelta(days=2)),
    "expired": (timedelta(days=-92), timedelta(days=-2)),
}
_CA_CONFIG = """\
# written by selfheal lab for one signing: a throw-away database, any subject
[ca]
default_ca = lab
[lab]
database = {folder}/index.txt
new_certs_dir = {folder}
rand_serial = yes
default_md = sha256
policy = any_subject
copy_extensions = copy
unique_subject = no
[any_subject]
commonName = supplied
"""


@dataclass(frozen=True)
class Validity:
    """When a certificate starts and stops being valid (UTC)."""

    not_before: datetime
    not_after: datetime


def validity(kind: Kind, now: datetime) -> Validity:
    """The validity period of a ``kind`` certificate issued at ``now``."""
    start, end = _WINDOWS[kind]
    return Validity(now + start, now + end)


def openssl_time(moment: datetime) -> str:
    """``moment`` as ``openssl ca -startdate/-enddate`` wants it: YYYYMMDDHHMMSSZ in UTC."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def ca_files(ca_dir: Path) -> tuple[Path, Path]:
    """The CA certificate and key paths under ``ca_dir``."""
    return ca_dir / "ca.crt", ca_dir / "ca.key"


def _openssl(*args: str, cwd: Path | None = None) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False,
                            cwd=cwd)
    if result.returncode != 0:
        raise PermanentError(f"openssl {args[0]} failed (rc {result.returncode}): "
                             f"{result.stderr.strip()[-400:]}")


def ensure_ca(ca_dir: Path) -> tuple[Path, Path]:
    """The lab CA's certificate and key, made on first use (an EC key, 10 years)."""
    cert, key = ca_files(ca_dir)
    if cert.is_file() and key.is_file():
        return cert, key
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(CA_DAYS),
             "-subj", "/CN=selfheal lab CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key.chmod(0o600)
    return cert, key


def issue(ca_dir: Path, address: str, period: Validity, out_dir: Path) -> tuple[Path, Path]:
    """Issue a certificate for the IP ``address`` valid for ``period`` into ``out_dir``
    (``site.crt`` and ``site.key``, each replaced atomically); their paths."""
    ca_cert, ca_key = ensure_ca(ca_dir)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="selfheal-lab-ca-") as tmp:
        work = Path(tmp)
        (work / "index.txt").touch()
        (work / "ca.cnf").write_text(_CA_CONFIG.format(folder=work), encoding="utf-8")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}",
                 "-nodes", "-keyout", str(work / "site.key"), "-out", str(work / "site.csr"),
                 "-subj", f"/CN={address}", "-addext", f"subjectAltName=IP:{address}")
        _openssl("ca", "-batch", "-notext", "-config", str(work / "ca.cnf"),
                 "-cert", str(ca_cert), "-keyfile", str(ca_key),
                 "-startdate", openssl_time(period.not_before),
                 "-enddate", openssl_time(period.not_after),
                 "-in", str(work / "site.csr"), "-out", str(work / "site.crt"))
        # key first: a reader that sees the new certificate also finds its key
        for name, mode in (("site.key", 0o600), ("site.crt", 0o644)):
            staged = out_dir / f".{name}.new"
            shutil.copyfile(work / name, staged)
            staged.chmod(mode)
            staged.replace(out_dir / name)
    return out_dir / "site.crt", out_dir / "site.key"


def not_after(pem: bytes | str) -> datetime:
    """The end of validity of the (first) certificate in ``pem`` (PEM or DER bytes)."""
    data = pem.encode() if isinstance(pem, str) else pem
    inform = "PEM" if data.lstrip().startswith(b"-----BEGIN") else "DER"
    result = subprocess.run(["openssl", "x509", "-inform", inform, "-noout", "-enddate"],
                            input=data, capture_output=True, check=False)
    if result.returncode != 0:
        raise PermanentError(f"not a certificate: {result.stderr.decode(errors='replace')[-200:]}")
    text = result.stdout.decode().strip().removeprefix("notAfter=")
    return datetime.strptime(text, "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)
