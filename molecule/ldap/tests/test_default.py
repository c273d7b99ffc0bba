"""testinfra: the hub runs the LDAP authenticator with certificate checks and the search password kept out of its files."""

import json


def test_snippet_verifies_the_directory_and_holds_no_password(host):
    snippet = host.file("/etc/jupyterhub/conf.d/auth.py")
    assert snippet.mode == 0o600 and snippet.user == "root"
    text = snippet.content_string
    assert '"validate": ssl.CERT_REQUIRED' in text and 'tls_strategy = "before_bind"' in text
    assert "molecule-ldap-password" not in text
    secrets = host.file("/etc/jupyterhub/conf.d/auth-secrets.json")
    assert secrets.mode == 0o600 and json.loads(secrets.content_string) == {"search_password": "molecule-ldap-password"}


def test_hub_starts_with_the_ldap_authenticator(host):
    assert host.service("jupyterhub").is_running
    assert json.loads(host.check_output("curl -sf http://127.0.0.1:8000/hub/api/"))["version"].startswith("6.")
    log = host.check_output("journalctl -u jupyterhub --no-pager -o cat")
    assert "Using Authenticator: hubfleet_ldap.HubfleetLDAPAuthenticator" in log
    assert "molecule-ldap-password" not in log


def test_a_login_as_the_hubs_admin_is_refused_before_the_directory_is_asked(host):
    """The directory (ldap.example.invalid) cannot even be reached: the refusal comes first."""
    page = host.run("curl -s -c /tmp/jar -o /dev/null http://127.0.0.1:8000/hub/login")
    assert page.rc == 0
    xsrf = host.check_output("awk '$6 == \"_xsrf\" {print $7}' /tmp/jar")
    refused = host.run("curl -s -b /tmp/jar -w '\\n%{http_code}' --data-urlencode username=admin "
                       f"--data-urlencode password=x --data-urlencode _xsrf={xsrf} http://127.0.0.1:8000/hub/login")
    assert refused.stdout.rstrip().endswith("403") and "reserved for the hub itself" in refused.stdout
