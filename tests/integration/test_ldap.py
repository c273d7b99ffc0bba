"""LDAP against a real slapd (tests/support/slapd.py) over StartTLS, with search-then-bind.

slapd runs on this machine, on the course network's gateway; the hub in its host container
reaches it there and trusts its test CA through the host's trust store. slapd refuses simple binds
without TLS, so every login that works went through StartTLS; its log shows it too.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess

import pytest
import requests

from hubfleet.jupyter import cookie_for, execute, login_with_password, start_own_server
from tests.support.courses import (
    course_env,
    create_course,
    destroy_course,
    ensure_course_network,
    free_port,
    hub_log,
    hubfleet,
    reaching,
    service_client,
    write_descriptor,
)
from tests.support.slapd import GROUPS, PEOPLE, Account, Slapd, ensure_slapd_installed
from tests.support.test_ca import TestCA

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ALICE = Account("alice", "alice-" + secrets.token_urlsafe(12))  # in the course's group
BOB = Account("bob", "bob-" + secrets.token_urlsafe(12))  # a directory user outside the group
ADMIN = Account("admin", "admin-" + secrets.token_urlsafe(12))  # a directory account with the hub admin's name
READER_PASSWORD = "reader-" + secrets.token_urlsafe(16)
HEALTH = Account("hubhealth", "health-" + secrets.token_urlsafe(12))  # the operator's account for status's login


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    """(course, slapd): a course that logs in against a real slapd with StartTLS."""
    ensure_slapd_installed()
    name = f"t-ldap-{secrets.token_hex(2)}"
    work = tmp_path_factory.mktemp(name)
    gateway = ensure_course_network(name, work)
    ca = TestCA(work / "ca")
    slapd = Slapd(work / "slapd", gateway, free_port(gateway), ca.issue("slapd", gateway), ca.path,
                  members=[ALICE, ADMIN, HEALTH], others=[BOB], group="numerics", reader_password=READER_PASSWORD).start()
    env = course_env(work / "state", HUBFLEET_TEST_LDAP_READER=READER_PASSWORD, HUBFLEET_TEST_LDAP_HEALTH=HEALTH.password)
    authenticator = {
        "kind": "ldap", "server_uri": slapd.uri, "starttls": True,
        "search": {"bind_dn": slapd.reader_dn, "bind_password": "env:HUBFLEET_TEST_LDAP_READER", "base_dn": PEOPLE},
        "allowed_groups": [slapd.group_dn],
        "health_account": {"username": HEALTH.uid, "password": "env:HUBFLEET_TEST_LDAP_HEALTH"},
    }
    try:
        # The directory's CA is the operator's to name once: roles/trust puts it in the hosts' one store.
        course = create_course(env, write_descriptor(work, name, authenticator, ca_certificates=[str(ca.path)]), name)
        with reaching(course):  # every hub is HTTPS: its *.localhost name and the embedded ACME root
            yield course, slapd
    finally:
        destroy_course(env, name)
        slapd.stop()


def test_slapd_refuses_plain_binds_so_only_tls_can_work(directory):
    _, slapd = directory
    plain = slapd.whoami(ALICE, starttls=False)
    assert plain.returncode != 0 and "Confidentiality required" in plain.stderr
    assert slapd.whoami(ALICE, starttls=True).stdout.strip() == f"dn:{ALICE.dn}"


def test_member_of_the_group_logs_in_and_runs_code(directory):
    course, _ = directory
    student = login_with_password(course.url, "alice", ALICE.password)
    start_own_server(student, course.url, "alice")
    result = execute(f"{course.url}/user/alice", "import os; print(os.environ['JUPYTERHUB_USER'])", session=student)
    assert (result.status, result.output) == ("ok", "alice\n"), result.error


def test_status_logs_in_with_the_operators_directory_account_and_leaves_no_account(directory):
    course, _ = directory
    status = json.loads(hubfleet(course.env, "status", course.name, "--json", "--no-probe").stdout)
    assert status["healthy"] and status["health"]["student_login"] is True, status["health"]
    assert HEALTH.uid not in {u["name"] for u in service_client(course).users()}
    assert HEALTH.password not in json.dumps(status)


def test_wrong_password_and_users_outside_the_group_stay_out(directory):
    course, _ = directory
    for who, password in (("alice", "not-" + ALICE.password), ("bob", BOB.password), ("nobody", "whatever-pw")):
        with pytest.raises(Exception, match="refused \\(403\\)"):
            login_with_password(course.url, who, password)
    assert {"bob", "nobody"}.isdisjoint(u["name"] for u in service_client(course).users())
    log = hub_log(course)
    assert "User 'bob' not allowed" in log
    for secret in (ALICE.password, BOB.password, READER_PASSWORD):
        assert secret not in log, "no password may reach the hub's log"


def test_a_directory_account_named_admin_is_refused_before_the_directory_is_asked(directory):
    course, slapd = directory
    browser = requests.Session()
    browser.get(f"{course.url}/hub/login", timeout=30)
    for name in ("admin", "Admin"):
        refused = browser.post(f"{course.url}/hub/login", allow_redirects=False, timeout=30, data={
            "username": name, "password": ADMIN.password, "_xsrf": cookie_for(browser, "_xsrf", "/hub/login") or ""})
        assert refused.status_code == 403 and "reserved for the hub itself" in refused.text
    assert f'BIND dn="{ADMIN.dn}"' not in slapd.log(), "the directory was never asked"
    assert browser.get(f"{course.url}/hub/api/user", timeout=30).status_code in (401, 403)


def test_the_hub_used_starttls_on_every_connection(directory):
    course, slapd = directory
    address = _host_address(course.host)
    connections = slapd.connections_from(address)
    binds = [c for c in connections.values() if any(" BIND " in line for line in c)]
    assert binds, f"slapd saw no bind from the hub at {address}"
    for lines in binds:
        text = "\n".join(lines)
        assert " STARTTLS" in text, text
        ssf = re.search(r"TLS established tls_ssf=(\d+)", text)
        assert ssf and int(ssf.group(1)) >= 128, text
    assert f'BIND dn="{slapd.reader_dn}"' in slapd.log(), "the search account bound first"
    assert f"cn=numerics,{GROUPS}" in slapd.log(), "the group was checked"


def _host_address(container: str) -> str:
    """The host container's address on the course network (where slapd sees the hub come from)."""
    out = subprocess.run(["docker", "inspect", container, "--format",
                          "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0]
