"""Authenticator variables and secrets: what each kind gives the roles, and what it keeps in the store."""

from __future__ import annotations

import copy

import pytest

from hubfleet.authenticators import KINDS, kind_of, secret_labels
from hubfleet.descriptor import AUTH_KINDS
from hubfleet.descriptor import parse_course
from hubfleet.errors import HubfleetError
from hubfleet.state import StateStore

LTI11 = {"kind": "lti11", "secret": "generate", "lms_origin": "https://courses.edx.org"}
LTI13 = {"kind": "lti13", "issuer": "https://moodle.example.edu", "client_id": "tool-7",
         "deployment_ids": ["1", "2"], "authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
         "jwks_url": "https://moodle.example.edu/mod/lti/certs.php", "lms_origin": "https://moodle.example.edu"}
LDAPS = {"kind": "ldap", "server_uri": "ldaps://ldap.example.edu",
         "bind_dn_template": ["uid={username},ou=people,dc=example,dc=edu"],
         "allowed_groups": ["cn=numerics,ou=groups,dc=example,dc=edu"], "admin_users": ["prof"]}


@pytest.fixture
def course(workshop_data):
    def make(authenticator: dict, **extra):
        data = copy.deepcopy(workshop_data)
        data.update(authenticator=authenticator, **extra)
        return parse_course(data)

    return make


@pytest.fixture
def store(tmp_path):
    return StateStore(tmp_path / "state")


def role_variables(course):
    return kind_of(course).role_variables(course)


def ensure_secrets(store, course):
    return kind_of(course).ensure_secrets(store, course)


def test_every_descriptor_kind_has_one_class_and_back():
    assert set(KINDS) == set(AUTH_KINDS)
    assert all(kind.kind == name for name, kind in KINDS.items())


def test_shared_password_keeps_its_variables(course):
    variables = role_variables(course({"kind": "shared-password", "admin_users": ["teacher"]}))
    assert variables == {"hub_auth_role": "shared_password", "hub_admin_users": ["admin", "teacher"],
                         "proxy_frame_ancestors": []}


def test_shared_password_secrets_are_the_students_and_the_admins(course, store):
    secrets = ensure_secrets(store, course({"kind": "shared-password"}))
    assert set(secrets) == {"shared_password_user", "shared_password_admin"}
    assert len(secrets["shared_password_user"]) >= 12 and len(secrets["shared_password_admin"]) >= 32
    assert secrets == ensure_secrets(store, course({"kind": "shared-password"})), "a re-run keeps both"
    assert {"shared-password", "admin-password"} <= set(secret_labels())


def test_lti11_variables_name_key_field_and_origin_but_no_secret(course):
    variables = role_variables(course(LTI11))
    assert variables["hub_auth_role"] == "lti" and variables["lti_version"] == "1.1"
    assert variables["lti_consumer_key"] == "workshop"  # the course name when the descriptor has none
    assert variables["lti_username_key"] == "user_id"
    assert variables["proxy_frame_ancestors"] == variables["lti_frame_ancestors"] == ["https://courses.edx.org"]
    assert variables["lti_secure_cookies"] is True  # every hub is HTTPS: the LMS iframe keeps its cookies
    assert not any("secret" in key for key in variables)


def test_lti_cookies_are_secure_with_tls(course):
    variables = role_variables(course(LTI11, tls={"acme_server": "local", "email": "ops@example.edu"}))
    assert variables["lti_secure_cookies"] is True


def test_lti13_variables_name_the_platform(course):
    variables = role_variables(course(LTI13))
    assert variables["lti_version"] == "1.3"
    assert variables["lti_issuer"] == "https://moodle.example.edu"
    assert variables["lti_client_ids"] == ["tool-7"] and variables["lti_deployment_ids"] == ["1", "2"]
    assert variables["lti_jwks_url"].endswith("/certs.php") and variables["lti_username_key"] == "sub"


@pytest.mark.parametrize("uri,starttls,address,port,strategy", [
    ("ldaps://ldap.example.edu", False, "ldap.example.edu", 636, "on_connect"),
    ("ldaps://ldap.example.edu:1636", False, "ldap.example.edu", 1636, "on_connect"),
    ("ldap://ldap.example.edu", True, "ldap.example.edu", 389, "before_bind"),
    ("ldap://127.0.0.1:3389", False, "127.0.0.1", 3389, "insecure"),
])
def test_ldap_tls_follows_the_uri(course, uri, starttls, address, port, strategy):
    variables = role_variables(course({**LDAPS, "server_uri": uri, "starttls": starttls}))
    assert (variables["ldap_server_address"], variables["ldap_server_port"], variables["ldap_tls_strategy"]) == (
        address, port, strategy)
    assert variables["ldap_bind_dn_templates"] == ["uid={username},ou=people,dc=example,dc=edu"]
    assert variables["ldap_allowed_groups"] == ["cn=numerics,ou=groups,dc=example,dc=edu"]
    assert variables["ldap_lookup_dn"] is False
    assert variables["hub_admin_users"] == ["admin", "prof"]


def test_ldap_search_then_bind(course):
    search = {"bind_dn": "cn=hub,dc=example,dc=edu", "bind_password": "env:LDAP_PW",
              "base_dn": "ou=people,dc=example,dc=edu"}
    variables = role_variables(course({**LDAPS, "bind_dn_template": [], "search": search}))
    assert variables["ldap_lookup_dn"] is True
    assert variables["ldap_search_user"] == "cn=hub,dc=example,dc=edu"
    assert variables["ldap_search_base"] == "ou=people,dc=example,dc=edu" and variables["ldap_user_attribute"] == "uid"


def test_lti11_secret_is_generated_once_and_key_recorded(course, store):
    c = course(LTI11)
    first = ensure_secrets(store, c)
    assert len(first["lti_consumer_secret"]) >= 32
    assert ensure_secrets(store, c) == first, "a re-run keeps the secret the LMS already has"
    assert store.get_secret("workshop", "lti11-secret") == first["lti_consumer_secret"]
    assert store.get_secret("workshop", "lti11-key") == "workshop"
    assert (store.secret_path("workshop", "lti11-secret").stat().st_mode & 0o777) == 0o600


def test_lti11_secret_from_the_environment(course, store, monkeypatch):
    monkeypatch.setenv("EDX_LTI_SECRET", "s3cret-from-the-environment")
    secrets = ensure_secrets(store, course({**LTI11, "secret": "env:EDX_LTI_SECRET", "consumer_key": "edx-key"}))
    assert set(secrets) == {"lti_consumer_secret", "lti_operator_password"}
    assert secrets["lti_consumer_secret"] == "s3cret-from-the-environment"
    assert store.get_secret("workshop", "lti11-key") == "edx-key"


@pytest.mark.parametrize("auth", [LTI11, LTI13], ids=["lti11", "lti13"])
def test_an_lti_course_has_an_operator_account_apart_from_the_lms(course, store, auth):
    c = course(auth)
    secrets = ensure_secrets(store, c)
    assert len(secrets["lti_operator_password"]) >= 40
    assert ensure_secrets(store, c)["lti_operator_password"] == secrets["lti_operator_password"], "kept on re-runs"
    assert store.get_secret("workshop", "admin-password") == secrets["lti_operator_password"]
    assert "admin-password" in secret_labels()
    hints = kind_of(c).login_hints(c)
    assert any("/hub/operator-login" in hint and "credentials workshop" in hint for hint in hints)
    assert secrets["lti_operator_password"] not in " ".join(hints)


def test_lti11_refuses_a_guessable_secret_without_echoing_it(course, store, monkeypatch):
    monkeypatch.setenv("SHORT", "tiny")
    with pytest.raises(HubfleetError) as err:
        ensure_secrets(store, course({**LTI11, "secret": "env:SHORT"}))
    assert "4 characters" in str(err.value) and "tiny" not in str(err.value)


def test_lti11_refuses_a_key_with_a_colon(course, store):
    with pytest.raises(HubfleetError, match="colon"):
        ensure_secrets(store, course({**LTI11, "consumer_key": "edx:key"}))


def test_lti13_tool_keyset_is_public_and_stable(course, store):
    c = course(LTI13)
    import json

    keyset = json.loads(ensure_secrets(store, c)["lti_tool_jwks"])
    (key,) = keyset["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert "d" not in key and "p" not in key, "only the public half is published"
    assert json.loads(ensure_secrets(store, c)["lti_tool_jwks"]) == keyset
    assert "PRIVATE KEY" in store.get_secret("workshop", "lti13-tool-key")


def test_ldap_bind_password_comes_from_its_source(course, store, monkeypatch):
    monkeypatch.setenv("LDAP_PW", "directory-password")
    search = {"bind_dn": "cn=hub,dc=example,dc=edu", "bind_password": "env:LDAP_PW",
              "base_dn": "ou=people,dc=example,dc=edu"}
    secrets = ensure_secrets(store, course({**LDAPS, "search": search}))
    assert secrets == {"ldap_search_password": "directory-password"}
    assert store.get_secret("workshop", "ldap-bind-password") == "directory-password"


def test_ldap_bind_password_cannot_be_generated(course, store):
    search = {"bind_dn": "cn=hub,dc=example,dc=edu", "bind_password": "generate",
              "base_dn": "ou=people,dc=example,dc=edu"}
    with pytest.raises(HubfleetError, match="directory already has"):
        ensure_secrets(store, course({**LDAPS, "search": search}))


def test_ldap_direct_bind_needs_no_secret(course, store):
    assert ensure_secrets(store, course(LDAPS)) == {}
