"""What the roles write into the hub's files, rendered by Ansible itself and run as JupyterHub would run it.

One ansible-playbook run renders every case (one play each, variables given as hubfleet gives them:
`!unsafe` YAML), so the real filters, the real file-writing tasks and the real quoting are tested.
No hub here: each snippet runs against a stand-in for traitlets' config object that records what it
sets. Values are hostile on purpose: quotes, backslashes, `$`, Jinja braces, a Python comment,
non-ASCII and an emoji must all arrive unchanged, and no secret may appear in a .py file.
"""

from __future__ import annotations

import ast
import html
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hubfleet.ansible import unsafe_yaml
from hubfleet.teaching import lms_role_table

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "odd \"q\" \\ 'single' $HOME {{ 7 * 7 }} {% raw %} # not a comment é 😀"
SECRET = "s3cret " + HOSTILE  # every secret holds the marker s3cret: it must never be in a .py file or a log


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


def role_task(role: str, name: str, tasks_file: str = "main.yml") -> dict:
    """One task of a role, as written there."""
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / tasks_file).read_text())
    return next(task for task in tasks if task["name"] == name)


def template(role: str, src: str, dest: str) -> dict:
    return {"name": f"render {role}/{src}",
            "ansible.builtin.template": {"src": str(ROOT / "roles" / role / "templates" / src), "dest": dest}}


def file_task(role: str, name: str, tasks_file: str) -> dict:
    task = dict(role_task(role, name, tasks_file))
    module = next(key for key in task if key.startswith("ansible.builtin."))
    task[module] = {**task[module], "owner": None, "group": None}  # the test runs as whoever runs it
    task.pop("notify", None)
    return task


def defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


TEACHING = {"lti_lms_roles": lms_role_table(), "lti_default_group": "students", "lti_launch_book": "",
            "lti_ca_bundle": "/etc/ssl/certs/ca-certificates.crt", "lti_operator_password": SECRET}
LTI11 = {"lti_version": "1.1", "lti_consumer_key": HOSTILE, "lti_consumer_secret": SECRET,
         "lti_username_key": "lis_person_sourcedid", "lti_frame_ancestors": ["https://courses.edx.org"],
         "lti_secure_cookies": True, "lti_timestamp_window": 300, **TEACHING}
LTI13 = {"lti_version": "1.3", "lti_issuer": "https://moodle.example.edu", "lti_client_ids": ["tool-7", HOSTILE],
         "lti_deployment_ids": ["1"], "lti_username_key": "sub",
         "lti_authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
         "lti_jwks_url": "https://moodle.example.edu/mod/lti/certs.php", "lti_frame_ancestors": [],
         "lti_secure_cookies": False, "lti_timestamp_window": 300, **TEACHING,
         "lti_launch_book": "/srv/jupyterhub/lms.sqlite"}
LDAP = {"ldap_server_address": "ldap.example.edu", "ldap_server_port": 389, "ldap_tls_strategy": "before_bind",
        "ldap_bind_dn_templates": [], "ldap_lookup_dn": True, "ldap_search_user": "cn=hub,dc=example,dc=edu",
        "ldap_search_password": SECRET, "ldap_search_base": "ou=people,dc=example,dc=edu",
        "ldap_user_attribute": "uid", "ldap_allowed_groups": ["cn=numerics,ou=groups,dc=example,dc=edu"],
        "ldap_ca_certificate": ""}
HUB = {"hub_course": "queues", "hub_title": HOSTILE + " <script>alert(1)</script>", "hub_image": "hubfleet/notebook:1",
       "hub_mem_limit": "512M", "hub_cpu_limit": 0.5, "hub_connect_address": "10.0.0.5",
       "hub_admin_users": ["admin", HOSTILE], "hub_service_token": SECRET, "hub_node_capacity": 7}
GOOD_PROXY = {"proxy_domain": "queues.hub.example.edu", "proxy_frame_ancestors": ["https://courses.edx.org:8443"]}
BAD_PROXY = {"proxy_domain": "queues.hub.example.edu",
             "proxy_frame_ancestors": ['https://lms.example.edu"; add_header X-Evil 1; #']}

CASES = {
    # name: (role whose defaults apply, variables, tasks)
    "lti11": ("lti", LTI11, [("template", "lti", "auth.py.j2"),
                             ("task", "lti", "Write the authenticator's secrets where only the hub reads them", "config.yml")]),
    "lti11-plain-cookies": ("lti", {**LTI11, "lti_secure_cookies": False, "lti_frame_ancestors": []},
                            [("template", "lti", "auth.py.j2"),
                             ("task", "lti", "Write the authenticator's secrets where only the hub reads them",
                              "config.yml")]),
    "lti13": ("lti", LTI13, [("template", "lti", "auth.py.j2"),
                             ("task", "lti", "Write the authenticator's secrets where only the hub reads them", "config.yml")]),
    "ldap-search": ("ldap", LDAP, [("template", "ldap", "auth.py.j2"),
                                   ("task", "ldap", "Write the authenticator's secrets where only the hub reads them",
                                    "config.yml")]),
    "ldap-direct": ("ldap", {**LDAP, "ldap_lookup_dn": False, "ldap_allowed_groups": [],
                             "ldap_bind_dn_templates": ["uid={username},ou=people,dc=example,dc=edu"],
                             "ldap_ca_certificate": "-----BEGIN CERTIFICATE-----\n"},
                    [("template", "ldap", "auth.py.j2"),
                     ("task", "ldap", "Write the authenticator's secrets where only the hub reads them", "config.yml")]),
    "shared": ("shared_password", {"shared_password_user": SECRET, "shared_password_admin": "s3cret-é-" + "x" * 32},
               [("template", "shared_password", "auth.py.j2"),
                ("task", "shared_password", "Write the passwords where only the hub reads them", "main.yml")]),
    "hub": ("hub", HUB, [("template", "hub", "jupyterhub_config.py.j2"), ("template", "hub", "jupyterhub.service.j2"),
                         ("task", "hub", "Write the secrets the hub reads at start", "config.yml")]),
}
CONFIG_DIRS = {"lti": "lti_config_dir", "ldap": "ldap_config_dir", "shared_password": "shared_password_config_dir",
               "hub": "hub_config_dir"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """Every case rendered in one ansible-playbook run: {case: its directory}, plus the proxy checks."""
    base = tmp_path_factory.mktemp("roles")
    plays, dirs = [], {}
    for case, (role, variables, steps) in CASES.items():
        directory = base / case
        (directory / "conf.d").mkdir(parents=True)
        dirs[case] = directory
        own = {**defaults(role), **variables, CONFIG_DIRS[role]: str(directory), "hub_data_dir": str(directory),
               "ansible_python_interpreter": sys.executable}
        vars_file = base / f"{case}.vars.yml"
        vars_file.write_text(unsafe_yaml({k: v for k, v in own.items() if not str(k).startswith("__")}))
        tasks = []
        for step in steps:
            if step[0] == "template":
                name = step[2].removesuffix(".j2")
                tasks.append(template(step[1], step[2], str(directory / name)))
            else:
                tasks.append(file_task(step[1], step[2], step[3]))
        plays.append({"name": case, "hosts": "localhost", "connection": "local", "gather_facts": False,
                      "vars_files": [str(vars_file)], "tasks": tasks})
    check = role_task("proxy", "Check the values written into nginx's site", "site.yml")
    for case, variables in (("proxy-good", GOOD_PROXY), ("proxy-bad", BAD_PROXY)):
        vars_file = base / f"{case}.vars.yml"
        vars_file.write_text(unsafe_yaml({**defaults("proxy"), **variables, "proxy_tls_certificate": "",
                                          "ansible_python_interpreter": sys.executable}))
        plays.append({"name": case, "hosts": "localhost", "connection": "local", "gather_facts": False,
                      "vars_files": [str(vars_file)],
                      "tasks": [{**check, "ignore_errors": True, "register": "checked"},
                                {"ansible.builtin.copy": {"content": "{{ checked.failed | default(false) | to_json }}",
                                                          "dest": str(base / f"{case}.failed")}}]})
    playbook = base / "render.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "s3cret" not in proc.stdout, "no secret in Ansible's output"
    for path in base.glob("*/*.py"):
        assert "s3cret" not in path.read_text(encoding="utf-8"), f"a secret in {path.name}"
    return {**dirs, "proxy-good": json.loads((base / "proxy-good.failed").read_text()),
            "proxy-bad": json.loads((base / "proxy-bad.failed").read_text())}


def run_snippet(path: Path) -> Config:
    config = Config()
    saved_path = list(sys.path)
    try:
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"),  # noqa: S102
             {"get_config": lambda: config, "load_subconfig": lambda name: None})
    finally:
        sys.path[:] = saved_path
    return config


def secrets_file(directory: Path) -> dict:
    path = directory / "conf.d" / "auth-secrets.json"
    assert path.stat().st_mode & 0o777 == 0o600
    return json.loads(path.read_text())


def test_lti11_snippet_reads_the_secret_from_its_private_file_and_frames_for_the_lms(rendered):
    assert secrets_file(rendered["lti11"]) == {"consumer_secret": SECRET}
    c = run_snippet(rendered["lti11"] / "auth.py")
    assert c.JupyterHub.values["authenticator_class"] == "hubfleet_lti.HubfleetLTI11Authenticator"
    lti = c.HubfleetLTI11Authenticator.values
    assert lti["consumers"] == {HOSTILE: SECRET} and lti["username_key"] == "lis_person_sourcedid"
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


def test_lti11_without_secure_cookies_keeps_default_cookies(rendered):
    c = run_snippet(rendered["lti11-plain-cookies"] / "auth.py")
    settings = c.JupyterHub.values["tornado_settings"]
    assert "cookie_options" not in settings
    assert settings["headers"] == {"Content-Security-Policy": "frame-ancestors 'self'"}


def test_lti13_snippet_names_the_platform_and_serves_the_tool_keyset(rendered):
    keyset = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}
    (rendered["lti13"] / "lti13-tool-jwks.json").write_text(json.dumps(keyset))
    assert secrets_file(rendered["lti13"]) == {}
    c = run_snippet(rendered["lti13"] / "auth.py")
    lti = c.HubfleetLTI13Authenticator.values
    assert c.JupyterHub.values["authenticator_class"] == "hubfleet_lti.HubfleetLTI13Authenticator"
    assert lti["issuer"] == "https://moodle.example.edu" and lti["client_id"] == {"tool-7", HOSTILE}
    assert lti["deployment_ids"] == {"1"} and lti["jwks_endpoint"].endswith("/certs.php")
    assert lti["tool_jwks"] == keyset


def test_ldap_snippet_verifies_the_directory_and_keeps_the_password_out(rendered):
    assert secrets_file(rendered["ldap-search"]) == {"search_password": SECRET}
    c = run_snippet(rendered["ldap-search"] / "auth.py")
    ldap = c.LDAPAuthenticator.values
    assert c.JupyterHub.values["authenticator_class"] == "hubfleet_ldap.HubfleetLDAPAuthenticator"
    assert ldap["tls_strategy"] == "before_bind" and ldap["tls_kwargs"] == {"validate": ssl.CERT_REQUIRED}
    assert ldap["lookup_dn"] is True and ldap["lookup_dn_search_password"] == SECRET
    assert ldap["lookup_dn_user_dn_attribute"] == "uid"
    assert ldap["allowed_groups"] == ["cn=numerics,ou=groups,dc=example,dc=edu"]
    assert "allow_all" not in c.Authenticator.values, "only the groups' members may log in"


def test_ldap_direct_bind_without_groups_lets_every_account_in(rendered):
    assert secrets_file(rendered["ldap-direct"]) == {}
    c = run_snippet(rendered["ldap-direct"] / "auth.py")
    ldap = c.LDAPAuthenticator.values
    assert ldap["bind_dn_template"] == ["uid={username},ou=people,dc=example,dc=edu"]
    assert ldap["tls_kwargs"]["ca_certs_file"] == str(rendered["ldap-direct"] / "ldap-ca.pem")
    assert "lookup_dn" not in ldap and c.Authenticator.values["allow_all"] is True


def test_shared_password_snippet_reads_both_passwords_unchanged_from_its_private_file(rendered):
    task = role_task("shared_password", "Write the passwords where only the hub reads them")
    assert task.get("no_log") is True, "the passwords never reach Ansible's output"
    assert secrets_file(rendered["shared"]) == {"user": SECRET, "admin": "s3cret-é-" + "x" * 32}
    c = run_snippet(rendered["shared"] / "auth.py")
    assert c.JupyterHub.authenticator_class == "hubfleet_shared_password.HubfleetSharedPasswordAuthenticator"
    assert c.SharedPasswordAuthenticator.user_password == SECRET
    assert c.SharedPasswordAuthenticator.admin_password == "s3cret-é-" + "x" * 32


def test_hub_config_quotes_every_value_escapes_the_title_and_reads_the_token_from_its_file(rendered):
    directory = rendered["hub"]
    text = (directory / "jupyterhub_config.py").read_text(encoding="utf-8")
    assert "<script>" not in text.split("announcement_login", 1)[0]
    secrets = json.loads((directory / "secrets.json").read_text())
    assert secrets == {"service_token": SECRET} and (directory / "secrets.json").stat().st_mode & 0o777 == 0o600
    c = run_snippet(directory / "jupyterhub_config.py")
    hub = c.JupyterHub.values
    # JupyterHub renders announcements as HTML: the title arrives as text, escaped once.
    assert hub["template_vars"] == {"announcement_login": html.escape(HUB["hub_title"])}
    assert [s for s in hub["services"] if s["name"] == "hubfleet"][0]["api_token"] == SECRET
    assert c.Authenticator.values["admin_users"] == {"admin", HOSTILE}
    assert hub["hub_bind_url"] == "http://10.0.0.5:8081" and c.PinnedSwarmSpawner.values["node_capacity"] == 7
    docker = c.DockerSpawner.values
    assert docker["allowed_images"] == ["hubfleet/notebook:1"] and docker["mem_limit"] == "512M"
    # No 429 for a full course: the spawner's line admits, JupyterHub's limits are off.
    assert hub["concurrent_spawn_limit"] == 0 and hub["active_server_limit"] == 0
    assert hub["extra_handlers"] == [(r"/api/hubfleet/seats", "hubfleet_seats.SeatsAPIHandler")]
    line = c.PinnedSwarmSpawner.values
    assert line["start_limit"] == 20 and line["line_bypass_users"] == ["hubfleet--probe"]
    assert docker["start_timeout"] == line["queue_timeout"] + line["server_start_timeout"], "the wait in line is no timeout"
    pressure = next(s for s in hub["services"] if s["name"] == "seats-under-pressure")
    assert "--timeout=600" in pressure["command"] and "--proxy-url=http://127.0.0.1:8000" in pressure["command"]
    assert docker["volumes"] == {"hubfleet-user-{username}": "/home/jovyan"}
    unit = (directory / "jupyterhub.service").read_text()
    assert "EnvironmentFile" not in unit and HOSTILE not in unit


def test_nginx_values_are_checked_before_the_site_is_written(rendered):
    assert rendered["proxy-good"] is False
    assert rendered["proxy-bad"] is True, "a quote in a frame ancestor would end nginx's string"


def test_the_operators_password_is_written_unchanged_where_only_the_hub_reads_it():
    task = role_task("lti", "Keep the operator's password where only the hub reads it", "config.yml")
    assert task["no_log"] is True and task["ansible.builtin.copy"]["mode"] == "0600"
    assert task["ansible.builtin.copy"]["content"] == "{{ lti_operator_password }}"


@pytest.mark.parametrize("case, book", [("lti11", ""), ("lti13", "/srv/jupyterhub/lms.sqlite")])
def test_lti_snippet_lets_the_launch_roles_decide_the_groups(rendered, case, book):
    c = run_snippet(rendered[case] / "auth.py")
    assert c.Authenticator.values["manage_groups"] is True, "groups follow the LMS at every launch (demotion too)"
    teaching = c.TeachingMixin.values
    assert teaching["lms_roles"] == lms_role_table() and [g for g, _ in teaching["lms_roles"]] == ["teachers", "students"]
    assert teaching["default_group"] == "students" and teaching["launch_book"] == book
    assert teaching["operator_password_file"] == str(rendered[case] / "conf.d" / "operator-password")


def test_lti13_trusts_the_platform_through_the_one_store_and_keeps_nonces_on_disk(rendered):
    lti = run_snippet(rendered["lti13"] / "auth.py").HubfleetLTI13Authenticator.values
    assert lti["ca_bundle"] == "/etc/ssl/certs/ca-certificates.crt", "the platform is trusted through the one store"
    assert lti["nonce_file"] == "/srv/jupyterhub/lti-nonces.sqlite"
