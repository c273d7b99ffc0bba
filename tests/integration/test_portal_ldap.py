"""The portal's directory sign-in against a real slapd on 127.0.0.1, over StartTLS whose certificate is verified.

slapd refuses simple binds without TLS, so a sign-in that works went through TLS. The directory's
certificate comes from a test CA: with that CA in the portal's settings (`ldap_ca_certificate`) a
directory user signs in; without it (the system's CAs), or when the certificate does not name the
server the portal dialled, the password is never sent and the sign-in is refused.
"""

from __future__ import annotations

import logging
import secrets

import pytest

from hubfleet.portal.config import parse_config
from tests.support.courses import free_port
from tests.support.slapd import PEOPLE, Account, Slapd, ensure_slapd_installed
from tests.support.test_ca import TestCA
from tests.unit.test_portal import Client, make_app, portal_of

GRACE = Account("grace", "grace-" + secrets.token_urlsafe(12))


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    ensure_slapd_installed()
    work = tmp_path_factory.mktemp("portal-ldap")
    ca = TestCA(work / "ca")
    slapd = Slapd(work / "slapd", "127.0.0.1", free_port(), ca.issue("slapd", "127.0.0.1"), ca.path,
                  members=[GRACE], others=[], group="teachers", reader_password=secrets.token_urlsafe(16)).start()
    yield slapd, ca
    slapd.stop()


def portal(tmp_path, slapd: Slapd, *, host: str = "127.0.0.1", ca=None):
    settings = {"ldap": {"server_uri": f"ldap://{host}:{slapd.port}", "starttls": True,
                         "bind_dn_template": [f"uid={{username}},{PEOPLE}"]},
                "ldap_mail_domain": "example.edu"}
    if ca is not None:
        settings["ldap_ca_certificate"] = str(ca)
    return make_app(tmp_path / "state", config=parse_config(settings))


def test_with_the_directorys_ca_a_directory_user_signs_in_over_tls(directory, tmp_path):
    slapd, ca = directory
    app = portal(tmp_path, slapd, ca=ca.path)
    try:
        assert Client(app).sign_in("grace", "wrong-" + GRACE.password).status_code == 401
        response = Client(app).sign_in("grace", GRACE.password)
        assert response.status_code == 302, response.text
        user = portal_of(app).db.user_by_login("grace")
        assert (user.role, user.source, user.email) == ("teacher", "ldap", "grace@example.edu")
    finally:
        portal_of(app).shutdown()
    log = slapd.log()
    assert "STARTTLS" in log and f'BIND dn="uid=grace,{PEOPLE}"' in log
    assert GRACE.password not in log


@pytest.mark.parametrize("case", ["the system's CAs do not know the directory's CA",
                                  "the certificate does not name the host the portal dialled"])
def test_an_unverified_directory_never_gets_the_password(directory, tmp_path, caplog, case):
    slapd, ca = directory
    app = portal(tmp_path, slapd, ca=None) if "system" in case else portal(tmp_path, slapd, host="localhost", ca=ca.path)
    binds_before = slapd.log().count(f'BIND dn="uid=grace,{PEOPLE}"')
    try:
        with caplog.at_level(logging.WARNING, logger="hubfleet.portal"):
            response = Client(app).sign_in("grace", GRACE.password)
        assert response.status_code == 401
        assert portal_of(app).db.user_by_login("grace") is None
    finally:
        portal_of(app).shutdown()
    assert slapd.log().count(f'BIND dn="uid=grace,{PEOPLE}"') == binds_before, "no bind reached the directory"
    assert "LDAP bind for a user failed: LDAPStartTLSError" in caplog.text and GRACE.password not in caplog.text
