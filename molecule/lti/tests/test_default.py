"""testinfra: the hub runs hubfleet's LTI 1.1 authenticator; a signed launch gets in, an unsigned one does not."""

import json

from hubfleet.usernames import hub_username

SECRET = "molecule-consumer-secret-0123456789"
OPERATOR_PASSWORD = "molecule-operator-password-0123456789"
SIGNED_LAUNCH = """
import sys
from urllib.parse import urlencode
from oauthlib.oauth1 import Client, SIGNATURE_TYPE_BODY
url = "http://127.0.0.1:8000/hub/lti/launch"
fields = {"lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
          "resource_link_id": "r1", "user_id": sys.argv[1], "roles": sys.argv[2]}
client = Client("molecule-key", client_secret="%s", signature_type=SIGNATURE_TYPE_BODY)
print(client.sign(url, "POST", body=urlencode(fields),
                  headers={"Content-Type": "application/x-www-form-urlencoded"})[2])
""" % SECRET


def signed_launch(host, user: str, roles: str) -> str:
    return host.check_output(f"/opt/jupyterhub/venv/bin/python -c '{SIGNED_LAUNCH}' {user} '{roles}'")


def hub_api(host, path: str) -> dict:
    token = "molecule-service-token-0123456789abcdef"
    return json.loads(host.check_output(f"curl -sf -H 'Authorization: token {token}' http://127.0.0.1:8000/hub/api{path}"))


def test_snippet_and_module_are_in_place_and_the_secret_only_in_its_private_file(host):
    snippet = host.file("/etc/jupyterhub/conf.d/auth.py")
    assert snippet.mode == 0o600 and snippet.user == "root"
    assert "hubfleet_lti.HubfleetLTI11Authenticator" in snippet.content_string
    assert SECRET not in snippet.content_string
    secrets = host.file("/etc/jupyterhub/conf.d/auth-secrets.json")
    assert secrets.mode == 0o600 and json.loads(secrets.content_string) == {"consumer_secret": SECRET}
    assert host.file("/etc/jupyterhub/hubfleet_lti.py").mode == 0o644


def test_hub_answers_with_the_lti_authenticator(host):
    assert host.service("jupyterhub").is_running
    assert json.loads(host.check_output("curl -sf http://127.0.0.1:8000/hub/api/"))["version"].startswith("6.")
    code = host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/hub/lti/launch")
    assert code == "405"  # a launch is a POST from the LMS


def test_unsigned_launch_is_refused_and_a_signed_one_logs_in(host):
    unsigned = host.run("curl -s -o /dev/null -w '%{http_code}' -d user_id=x http://127.0.0.1:8000/hub/lti/launch")
    assert unsigned.stdout == "401"
    body = signed_launch(host, "Molecule.Student", "Learner")
    raw = host.check_output(f"curl -s -D - -o /dev/null --data '{body}' http://127.0.0.1:8000/hub/lti/launch")
    status, *lines = raw.splitlines()
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
    assert status.startswith("HTTP/1.1 302")
    assert [v for k, v in headers if k.lower() == "location"][0].startswith(f"/hub/spawn/{hub_username('Molecule.Student')}?next=")
    csp = [v for k, v in headers if k.lower() == "content-security-policy"]
    assert csp == ["frame-ancestors 'self' https://lms.example.edu"]
    log = host.check_output("journalctl -u jupyterhub --no-pager -o cat")
    assert "oauth_consumer_key is missing" in log and SECRET not in log


def test_the_launch_roles_make_teachers_and_a_later_launch_demotes(host):
    for roles, group in (("Instructor,urn:lti:sysrole:ims/lis/User", "teachers"), ("Learner", "students")):
        body = signed_launch(host, "molecule.teacher", roles)  # a plain identity: its own hub name
        host.check_output(f"curl -sf -o /dev/null --data '{body}' http://127.0.0.1:8000/hub/lti/launch")
        assert hub_api(host, "/users/molecule.teacher")["groups"] == [group]


def test_the_operator_logs_in_with_the_admin_password_and_nobody_else_does(host):
    jar = "/tmp/molecule-operator-cookies"
    host.run(f"rm -f {jar}")
    host.check_output(f"curl -sf -c {jar} -o /dev/null http://127.0.0.1:8000/hub/operator-login")
    xsrf = host.check_output(f"awk '$6 == \"_xsrf\" {{print $7}}' {jar}")
    login = "curl -s -b {jar} -c {jar} -o /dev/null -w '%{{http_code}} %{{redirect_url}}' " \
            "--data-urlencode username=admin --data-urlencode password={pw} --data-urlencode _xsrf={xsrf} " \
            "http://127.0.0.1:8000/hub/operator-login"
    wrong = host.check_output(login.format(jar=jar, pw="not-the-password", xsrf=xsrf))
    assert wrong.startswith("403")
    right = host.check_output(login.format(jar=jar, pw=OPERATOR_PASSWORD, xsrf=xsrf))
    assert right.startswith("302") and right.endswith("/hub/admin")
    assert hub_api(host, "/users/admin")["admin"] is True
    assert OPERATOR_PASSWORD not in host.check_output("journalctl -u jupyterhub --no-pager -o cat")
