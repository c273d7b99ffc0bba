"""Certificate authorities every host of a course trusts besides the public ones (roles/trust).

The operator names them once: in the site file (`ca_certificates:`, for every course) or in a
course's descriptor (`ca_certificates:`, for that course). roles/trust puts them in each host's
system store, the one store the hub reads for LTI keysets, LDAP and grade passback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hubfleet.errors import FieldProblem, InvalidInput

if TYPE_CHECKING:
    from hubfleet.descriptor import Course

PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
SITE_KEY = "ca_certificates"


def site_ca_certificates(state_dir: Path | None = None) -> list[Path]:
    """The site file's ca_certificates (none when there is no site file or it names none)."""
    from hubfleet.site import load_site_wide

    return [path.expanduser() for path in load_site_wide(state_dir).ca_certificates]


def read_authorities(path: Path, field: str, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """(name, pem) of every CA certificate in a PEM file, or InvalidInput naming the field and the fix."""
    from cryptography import x509

    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput([FieldProblem(field, f"cannot read {path}: {exc.strerror or exc}")]) from None
    blocks = PEM_RE.findall(data)
    if not blocks:
        raise InvalidInput([FieldProblem(field, f"{path} holds no PEM certificate — give the authority's "
                                                "certificate in PEM (-----BEGIN CERTIFICATE-----)")])
    found = []
    for block in blocks:
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            raise InvalidInput([FieldProblem(field, f"{path} holds a certificate that cannot be read")]) from None
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        subject = cert.subject.rfc4514_string()
        if not is_ca:
            raise InvalidInput([FieldProblem(field, f"{path}: {subject} is not a certificate authority — give the "
                                                    "CA that signed the server's certificate, not the server's own")])
        if cert.not_valid_after_utc <= now:
            raise InvalidInput([FieldProblem(field, f"{path}: {subject} expired on "
                                                    f"{cert.not_valid_after_utc:%Y-%m-%d}")])
        digest = hashlib.sha256(cert.public_bytes(_der())).hexdigest()[:16]
        found.append((f"ca-{digest}", block.decode()))
    return found


def _der():
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER


def role_variables(course: "Course", site_cas: list[Path]) -> dict:
    """roles/trust's variables: every authority of the site file and of the descriptor, once each."""
    named = [(f"{SITE_KEY}[{i}] (site file)", p) for i, p in enumerate(site_cas)]
    named += [(f"{SITE_KEY}[{i}]", Path(p).expanduser()) for i, p in enumerate(course.ca_certificates)]
    authorities: dict[str, str] = {}
    for field, path in named:
        for name, pem in read_authorities(path, field):
            authorities.setdefault(name, pem)
    return {"trust_ca_certificates": [{"name": name, "pem": pem} for name, pem in sorted(authorities.items())]}
