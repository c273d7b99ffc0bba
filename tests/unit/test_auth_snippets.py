"""The conf.d snippets of roles/lti and roles/ldap, rendered by Ansible and run as JupyterHub would run them.

No hub here: the snippet runs against a stand-in for traitlets' config object that records what
it sets, which is enough to check the settings, the CSP and that no secret is written in the file.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hubfleet.teaching import lms_role_table

ROOT = Path(__file__).resolve().parents[2]


class Lazy(dict):
    """Like traitlets' LazyConfigValue: an unset dict or list trait that can be updated or appended to."""

    def append(self, item):
        self.setdefault("appended", []).append(item)

    def extend(self, items):
        self.setdefault("extend", []).extend(items)


class Section:
    def __init__(self):
        object.__setattr__(self, "values", {})

    def __getattr__(self, name):
        return self.values.setdefault(name, Lazy())

    def __setattr__(self, name, value):
        self.values[name] = value


class Config(dict):
    def __getattr__(self, name):
        return self.setdefault(name, Section())


def render(role: str, template: str, variables: dict, tmp_path: Path) -> str:
    """The template as the role writes it (Ansible's own templating, so its filters are real)."""
    dest = tmp_path / f"{role}-{template}"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {**variables, "ansible_python_interpreter": sys.executable},
             "tasks": [{"ansible.builtin.template": {"src": str(ROOT / "roles" / role / "templates" / template),
                                                     "dest": str(dest)}}]}]
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return dest.read_text()


def run_snippet(text: str, environ: dict[str, str]) -> Config:
    config = Config()
    old = dict(os.environ)
    os.environ.update(environ)
    saved_path = list(sys.path)
    try:
        exec(compile(text, "auth.py", "exec"), {"get_config": lambda: config})  # noqa: S102
    finally:
        os.environ.clear()
        os.environ.update(old)
        sys.path[:] = saved_path
    return config


TEACHING = {"lti_lms_roles": lms_role_table(), "lti_default_group": "students", "lti_launch_book": "",
            "lti_ca_bundle": "/etc/ssl/certs/ca-certificates.crt", "lti_operator_password": "operator-pw-\"odd\""}
LTI11 = {"lti_version": "1.1", "lti_config_dir": "/etc/jupyterhub", "lti_consumer_key": "queues",
         "lti_consumer_secret": 'odd "secret" \\ with $HOME', "lti_username_key": "lis_person_sourcedid",
         "lti_frame_ancestors": ["https://courses.edx.org"], "lti_secure_cookies": True, "lti_timestamp_window": 300,
         "lti_data_dir": "/srv/jupyterhub", **TEACHING}


def test_lti11_snippet_reads_the_secret_from_the_environment_and_frames_for_the_lms(tmp_path):
    text = render("lti", "auth.py.j2", LTI11, tmp_path)
    assert "odd" not in text, "the secret belongs in auth.env only"
    c = run_snippet(text, {"HUBFLEET_LTI_CONSUMER_SECRET": "from-env"})
    assert c.JupyterHub.values["authenticator_class"] == "hubfleet_lti.HubfleetLTI11Authenticator"
    lti = c.HubfleetLTI11Authenticator.values
    assert lti["consumers"] == {"queues": "from-env"} and lti["username_key"] == "lis_person_sourcedid"
    assert lti["nonce_file"] == "/srv/jupyterhub/lti-nonces.sqlite", "nonces outlive a hub restart"
    assert c.Authenticator.values["allow_all"] is True
    csp = "frame-ancestors 'self' https://courses.edx.org"  # exactly what roles/proxy sends
    settings = c.JupyterHub.values["tornado_settings"]
    assert settings["headers"] == {"Content-Security-Policy": csp}
    assert settings["cookie_options"] == settings["xsrf_cookie_kwargs"] == {"samesite": "None", "secure": True}
    # JupyterHub writes path=/hub/ into xsrf_cookie_kwargs; shared with cookie_options, the servers'
    # cookies would get that path and never come back to /user/... (an OAuth redirect loop).
    assert settings["cookie_options"] is not settings["xsrf_cookie_kwargs"]
    (arg,) = c.Spawner.values["args"]["appended"]
    name, _, literal = arg.partition("=")
    assert name == "--ServerApp.tornado_settings"
    assert ast.literal_eval(literal) == {"headers": {"Content-Security-Policy": csp},
                                         "xsrf_cookie_kwargs": {"samesite": "None", "secure": True}}


def test_lti11_env_file_quotes_the_secret_for_systemd(tmp_path):
    text = render("lti", "auth.env.j2", LTI11, tmp_path)
    assert 'HUBFLEET_LTI_CONSUMER_SECRET="odd \\"secret\\" \\\\ with $HOME"' in text
    assert "operator-pw" not in text, "the operator's password has a file of its own"


def test_the_operators_password_is_written_unchanged_where_only_the_hub_reads_it(tmp_path):
    tasks = yaml.safe_load((ROOT / "roles" / "lti" / "tasks" / "config.yml").read_text())
    task = next(t for t in tasks if t["name"] == "Keep the operator's password where only the hub reads it")
    assert task["no_log"] is True and task["ansible.builtin.copy"]["mode"] == "0600"
    assert task["ansible.builtin.copy"]["content"] == "{{ lti_operator_password }}"


@pytest.mark.parametrize("book", ["", "/srv/jupyterhub/lms.sqlite"])
def test_lti_snippet_lets_the_launch_roles_decide_the_groups(tmp_path, book):
    text = render("lti", "auth.py.j2", {**LTI11, "lti_launch_book": book}, tmp_path)
    assert "operator-pw" not in text, "the operator's password belongs in auth.env only"
    c = run_snippet(text, {"HUBFLEET_LTI_CONSUMER_SECRET": "x"})
    assert c.Authenticator.values["manage_groups"] is True, "groups follow the LMS at every launch (demotion too)"
    teaching = c.TeachingMixin.values
    assert teaching["lms_roles"] == lms_role_table() and [g for g, _ in teaching["lms_roles"]] == ["teachers", "students"]
    assert teaching["default_group"] == "students" and teaching["launch_book"] == book
    assert teaching["operator_password_file"] == "/etc/jupyterhub/conf.d/operator-password"


def test_lti11_without_tls_keeps_default_cookies(tmp_path):
    text = render("lti", "auth.py.j2", {**LTI11, "lti_secure_cookies": False, "lti_frame_ancestors": []}, tmp_path)
    c = run_snippet(text, {"HUBFLEET_LTI_CONSUMER_SECRET": "x"})
    settings = c.JupyterHub.values["tornado_settings"]
    assert "cookie_options" not in settings
    assert settings["headers"] == {"Content-Security-Policy": "frame-ancestors 'self'"}


def test_lti13_snippet_names_the_platform_and_serves_the_tool_keyset(tmp_path):
    keyset = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}
    (tmp_path / "lti13-tool-jwks.json").write_text(json.dumps(keyset))
    variables = {"lti_version": "1.3", "lti_config_dir": str(tmp_path), "lti_issuer": "https://moodle.example.edu",
                 "lti_client_ids": ["tool-7"], "lti_deployment_ids": ["1"], "lti_username_key": "sub",
                 "lti_authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
                 "lti_jwks_url": "https://moodle.example.edu/mod/lti/certs.php",
                 "lti_frame_ancestors": [], "lti_secure_cookies": False, "lti_timestamp_window": 300,
                 "lti_data_dir": str(tmp_path), **TEACHING}
    c = run_snippet(render("lti", "auth.py.j2", variables, tmp_path), {})
    lti = c.HubfleetLTI13Authenticator.values
    assert c.JupyterHub.values["authenticator_class"] == "hubfleet_lti.HubfleetLTI13Authenticator"
    assert lti["issuer"] == "https://moodle.example.edu" and lti["client_id"] == {"tool-7"}
    assert lti["deployment_ids"] == {"1"} and lti["jwks_endpoint"].endswith("/certs.php")
    assert lti["tool_jwks"] == keyset
    assert lti["ca_bundle"] == "/etc/ssl/certs/ca-certificates.crt", "the platform is trusted through the one store"
    assert lti["nonce_file"] == str(tmp_path / "lti-nonces.sqlite")


LDAP = {"ldap_config_dir": "/etc/jupyterhub", "ldap_server_address": "ldap.example.edu", "ldap_server_port": 389,
        "ldap_tls_strategy": "before_bind", "ldap_bind_dn_templates": [], "ldap_lookup_dn": True,
        "ldap_search_user": "cn=hub,dc=example,dc=edu", "ldap_search_password": "directory-secret",
        "ldap_search_base": "ou=people,dc=example,dc=edu", "ldap_user_attribute": "uid",
        "ldap_allowed_groups": ["cn=numerics,ou=groups,dc=example,dc=edu"], "ldap_ca_certificate": ""}


def test_ldap_snippet_verifies_the_directory_and_keeps_the_password_out(tmp_path):
    import ssl

    text = render("ldap", "auth.py.j2", LDAP, tmp_path)
    assert "directory-secret" not in text
    c = run_snippet(text, {"HUBFLEET_LDAP_SEARCH_PASSWORD": "from-env"})
    ldap = c.LDAPAuthenticator.values
    assert c.JupyterHub.values["authenticator_class"] == "hubfleet_ldap.HubfleetLDAPAuthenticator"
    assert ldap["tls_strategy"] == "before_bind" and ldap["tls_kwargs"] == {"validate": ssl.CERT_REQUIRED}
    assert ldap["lookup_dn"] is True and ldap["lookup_dn_search_password"] == "from-env"
    assert ldap["lookup_dn_user_dn_attribute"] == "uid"
    assert ldap["allowed_groups"] == ["cn=numerics,ou=groups,dc=example,dc=edu"]
    assert "allow_all" not in c.Authenticator.values, "only the groups' members may log in"
    assert 'HUBFLEET_LDAP_SEARCH_PASSWORD="directory-secret"' in render("ldap", "auth.env.j2", LDAP, tmp_path)


def test_ldap_direct_bind_without_groups_lets_every_account_in(tmp_path):
    variables = {**LDAP, "ldap_lookup_dn": False, "ldap_allowed_groups": [],
                 "ldap_bind_dn_templates": ["uid={username},ou=people,dc=example,dc=edu"],
                 "ldap_ca_certificate": "-----BEGIN CERTIFICATE-----\n"}
    c = run_snippet(render("ldap", "auth.py.j2", variables, tmp_path), {})
    ldap = c.LDAPAuthenticator.values
    assert ldap["bind_dn_template"] == ["uid={username},ou=people,dc=example,dc=edu"]
    assert ldap["tls_kwargs"]["ca_certs_file"] == "/etc/jupyterhub/ldap-ca.pem"
    assert "lookup_dn" not in ldap and c.Authenticator.values["allow_all"] is True
    assert "HUBFLEET_LDAP" not in render("ldap", "auth.env.j2", variables, tmp_path)


def role_task(role: str, name: str) -> dict:
    """One task of a role's tasks/main.yml, as written there."""
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text())
    return next(task for task in tasks if task["name"] == name)


def test_shared_password_snippet_reads_both_passwords_unchanged_from_its_private_file(tmp_path):
    odd = {"shared_password_user": 'odd "pw" \\ with $HOME and # and \'quotes\'',
           "shared_password_admin": "admin-é-" + "x" * 32, "shared_password_config_dir": str(tmp_path)}
    (tmp_path / "conf.d").mkdir()
    task = role_task("shared_password", "Write the passwords where only the hub reads them")
    assert task.get("no_log") is True, "the passwords never reach Ansible's output"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {**odd, "ansible_python_interpreter": sys.executable},
             "tasks": [{"ansible.builtin.copy": {**task["ansible.builtin.copy"], "owner": None, "group": None}}]}]
    playbook = tmp_path / "write.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    secrets = tmp_path / "conf.d" / "shared-password.json"
    assert secrets.stat().st_mode & 0o777 == 0o600

    text = render("shared_password", "auth.py.j2", odd, tmp_path)
    assert "odd" not in text and "admin-" not in text, "the passwords belong in the JSON file only"
    c = run_snippet(text, {})
    assert c.JupyterHub.authenticator_class == "hubfleet_shared_password.HubfleetSharedPasswordAuthenticator"
    assert c.SharedPasswordAuthenticator.user_password == odd["shared_password_user"]
    assert c.SharedPasswordAuthenticator.admin_password == odd["shared_password_admin"]
