"""Teaching: the roles and rights tables (and the docs that show them), the grading descriptor, trusted CAs."""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hubfleet import teaching, trust
from hubfleet.authenticators import kind_of
from hubfleet.descriptor import parse_course
from hubfleet.errors import InvalidInput
from hubfleet.providers.openstack.settings import parse_openstack_site as parse_site
from hubfleet.state import StateStore

ROOT = Path(__file__).resolve().parents[2]
LTI13 = {"kind": "lti13", "issuer": "https://moodle.example.edu", "client_id": "tool-7",
         "authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
         "jwks_url": "https://moodle.example.edu/mod/lti/certs.php",
         "token_url": "https://moodle.example.edu/mod/lti/token.php"}
LTI11 = {"kind": "lti11", "secret": "generate"}


@pytest.fixture
def course(workshop_data):
    def make(**changes):
        data = copy.deepcopy(workshop_data)
        data.update(changes)
        return parse_course(data)

    return make


def docs_table(heading: str) -> list[list[str]]:
    """The rows of the first table under a heading of docs/teaching.md."""
    lines = (ROOT / "docs" / "teaching.md").read_text().split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in lines[start + 2:end]]


def variables(c):
    return teaching.role_variables(c, kind_of(c))


def secrets_of(store, c):
    return teaching.ensure_secrets(store, c, kind_of(c))


def test_the_docs_show_the_lms_roles_table_of_the_code():
    shown = {(row[0], row[1], row[2]) for row in docs_table("## Who is a teacher")}
    expected = {(r.name, ", ".join(r.where), r.group) for r in teaching.LMS_ROLES}
    assert shown == expected


def test_the_docs_show_the_rights_table_of_the_code():
    shown = {(row[0], row[1], row[2]) for row in docs_table("## Who may do what")}
    expected = {(r.group, r.what, ", ".join(r.scopes)) for r in teaching.RIGHTS}
    assert shown == expected


def test_teachers_reach_only_students_and_the_grading_services():
    scopes = teaching.group_scopes(grading=True)
    for scope in scopes["teachers"]:
        assert "!group=students" in scope or "!service=" in scope or scope == "admin-ui", scope
    assert scopes[teaching.EVERYONE] == ["access:services!service=exchange"]
    assert "access:services!service=grader" not in teaching.group_scopes(grading=False)["teachers"]
    assert teaching.EVERYONE not in teaching.group_scopes(grading=False)


def test_the_lms_role_table_keeps_teachers_first():
    table = teaching.lms_role_table()
    assert [group for group, _ in table] == ["teachers", "students"]
    assert table[0][1] == {"course": ["Instructor", "TeachingAssistant", "Administrator"],
                           "institution": ["Administrator"], "system": ["Administrator"]}


def test_a_course_that_grades_gets_the_grading_role_and_its_rights(course):
    plain = variables(course(authenticator=LTI13))
    assert plain["grading_enabled"] is False and "grading_course_id" not in plain
    graded = variables(course(authenticator=LTI13, grading="nbgrader"))
    assert graded["grading_enabled"] is True and graded["grading_course_id"] == "workshop"
    assert graded["grading_lms"] == "1.3" and graded["grading_token_url"].endswith("/token.php")
    assert graded["hub_user_scopes"] == ["access:services!service=exchange"]
    assert "access:services!service=grades" in graded["hub_group_scopes"]["teachers"]
    assert variables(course(authenticator=LTI11, grading={"course_id": "q-101"}))["grading_lms"] == "1.1"
    workshop = variables(course(grading="nbgrader"))
    assert workshop["grading_lms"] == "none", "a shared-password course grades, with no LMS to send grades to"


def test_grading_secrets_are_the_graders_token_and_for_lti13_the_tool_key(course, tmp_path):
    store = StateStore(tmp_path / "state")
    c = course(authenticator=LTI13, grading="nbgrader")
    secrets = secrets_of(store, c)
    assert set(secrets) == {"grading_grader_token", "grading_tool_key"}
    assert "PRIVATE KEY" in secrets["grading_tool_key"] and len(secrets["grading_grader_token"]) >= 40
    assert secrets_of(store, c) == secrets
    assert secrets_of(store, course(authenticator=LTI13)) == {}
    lti11 = secrets_of(store, course(authenticator=LTI11, grading="nbgrader"))
    assert set(lti11) == {"grading_grader_token", "grading_consumer_secret"}
    assert lti11["grading_consumer_secret"] == store.get_secret("workshop", "lti11-secret")


def problems(data) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        parse_course(data)
    return {p.path: p.message for p in err.value.problems}


def test_grading_descriptor_fields_name_the_field_and_the_fix(workshop_data):
    data = copy.deepcopy(workshop_data)
    data["grading"] = {"tool": "gradescope"}
    assert "nbgrader" in problems(data)["grading.tool"]
    data["grading"] = {"course_id": "stats/101"}
    assert "letters, digits" in problems(data)["grading.course_id"]
    data["grading"] = "nbgrader"
    data["authenticator"] = {k: v for k, v in LTI13.items() if k != "token_url"}
    found = problems(data)
    assert "token.php" in found["authenticator.token_url"]  # the check across fields names the field to fix
    data["authenticator"] = {**LTI13, "token_url": "ftp://moodle/token"}
    assert "is not a URL" in problems(data)["authenticator.token_url"]


# --- trusted CAs -------------------------------------------------------------------------------


def certificate(path: Path, *, ca: bool, days: int = 30, name: str = "Campus Root CA") -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=60))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_the_descriptors_and_the_sites_authorities_go_to_every_host_once(course, tmp_path):
    campus = certificate(tmp_path / "campus.pem", ca=True)
    lms = certificate(tmp_path / "lms.pem", ca=True, name="LMS CA")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(campus.read_bytes() + lms.read_bytes())
    variables = trust.role_variables(course(ca_certificates=[str(bundle)]), [campus])
    names = [item["name"] for item in variables["trust_ca_certificates"]]
    assert len(names) == 2 and len(set(names)) == 2 and all(re.fullmatch(r"ca-[0-9a-f]{16}", n) for n in names)
    assert all(item["pem"].startswith("-----BEGIN CERTIFICATE-----") for item in variables["trust_ca_certificates"])
    assert trust.role_variables(course(), []) == {"trust_ca_certificates": []}


@pytest.mark.parametrize("make, said", [
    (lambda p: certificate(p, ca=False), "not a certificate authority"),
    (lambda p: certificate(p, ca=True, days=-1), "expired on"),
    (lambda p: (p.write_text("not a certificate"), p)[1], "holds no PEM certificate"),
    (lambda p: p, "cannot read"),
])
def test_an_unusable_authority_names_the_field_and_the_fix(course, tmp_path, make, said):
    path = make(tmp_path / "ca.pem")
    with pytest.raises(InvalidInput) as err:
        trust.role_variables(course(ca_certificates=[str(path)]), [])
    (problem,) = err.value.problems
    assert problem.path == "ca_certificates[0]" and said in problem.message


def test_the_site_files_authorities_are_read_and_the_openstack_section_ignores_them(tmp_path, monkeypatch):
    campus = certificate(tmp_path / "campus.pem", ca=True)
    site = tmp_path / "site.yaml"
    site.write_text(f"ca_certificates: [{campus}]\n")
    monkeypatch.setenv("HUBFLEET_SITE_CONFIG", str(site))
    assert trust.site_ca_certificates() == [campus]
    site.write_text("ca_certificates: not-a-list\n")
    with pytest.raises(InvalidInput, match="ca_certificates: expected a list"):
        trust.site_ca_certificates()
    parsed = parse_site({"image": "debian-12", "external_network": "public", "operator_cidr": "192.0.2.0/24",
                         "ca_certificates": [str(campus)]})
    assert parsed.image == "debian-12"
    monkeypatch.setenv("HUBFLEET_SITE_CONFIG", str(tmp_path / "absent.yaml"))
    assert trust.site_ca_certificates() == []


# --- what roles/grading and roles/hub write for the hub ------------------------------------------


GRADING = {"grading_course_id": "stats-101", "grading_image": "hubfleet/notebook:latest",
           "grading_config_dir": "", "grading_data_dir": "/srv/hubfleet/grading/course",
           "grading_exchange_dir": "/srv/hubfleet/exchange", "grading_services_dir": "/opt/hubfleet/services",
           "grading_exchange_user": "hubfleet-exchange", "grading_exchange_address": "10.1.2.3",
           "grading_exchange_port": 8082, "grading_grader_port": 8083, "grading_grades_port": 8084,
           "grading_lms": "1.3", "grading_lms_roles": teaching.lms_role_table(), "grading_default_group": "students",
           "grading_username_key": "sub", "grading_consumer_key": "", "grading_client_id": "tool-7",
           "grading_token_url": "https://moodle.example.edu/mod/lti/token.php",
           "grading_ca_bundle": "/etc/ssl/certs/ca-certificates.crt", "grading_roster_interval": 900,
           "grading_launch_book": "/srv/jupyterhub/lms.sqlite", "grading_grader_token": "grader-token-value",
           "grading_hub_api_url": "http://10.1.2.3:8081/hub/api", "grading_grader_mem_limit": "2G",
           "grading_grader_cpu_limit": 1.0}


@pytest.mark.parametrize("lms", ["1.3", "none"])
def test_the_hub_gets_three_grading_services_their_rights_and_the_students_exchange(tmp_path, lms):
    import json

    from tests.support.role_render import render, run_text as run_snippet

    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "grader-token").write_text("grader-token-value\n")
    text = render("grading", "grading.py.j2", {**GRADING, "grading_config_dir": str(tmp_path), "grading_lms": lms},
                  tmp_path)
    assert "grader-token-value" not in text, "the token is read from its 0600 file, not written here"
    c = run_snippet(text, {})
    services = {s["name"]: s for s in c.JupyterHub.values["services"]["extend"]}
    assert set(services) == ({"exchange", "grader", "grades"} if lms != "none" else {"exchange", "grader"})
    assert services["exchange"]["url"] == "http://10.1.2.3:8082" and services["exchange"]["user"] == "hubfleet-exchange"
    assert services["grader"]["api_token"] == "grader-token-value" and services["grader"]["url"].startswith("http://127.")
    assert "environment" not in services.get("grades", {}), "no secret travels in the service's environment"
    roles = {r["name"]: r for r in c.JupyterHub.values["load_roles"]["extend"]}
    assert roles["hubfleet-grader"]["scopes"] == ["access:services!service=exchange"]
    environment = c.Spawner.values["environment"]
    assert environment["HUBFLEET_EXCHANGE_URL"] == "http://10.1.2.3:8082/services/exchange"
    assert environment["JUPYTER_CONFIG_PATH"] == "/etc/hubfleet/jupyter/nbgrader-student"
    if lms != "none":
        command = services["grades"]["command"]
        assert json.loads(command[command.index("--roles") + 1]) == teaching.lms_role_table()
        assert roles["hubfleet-grades"]["scopes"] == ["access:services!service=grader"]


def test_the_grader_environment_names_the_service_and_its_course(tmp_path):
    from tests.support.role_render import render

    text = render("grading", "grader.env.j2", GRADING, tmp_path)
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert values["JUPYTERHUB_SERVICE_NAME"] == "grader" and values["JUPYTERHUB_CLIENT_ID"] == "service-grader"
    assert values["JUPYTERHUB_SERVICE_PREFIX"] == "/services/grader/"
    assert values["JUPYTER_CONFIG_PATH"] == "/etc/hubfleet/jupyter/nbgrader-grader"
    assert values["HUBFLEET_COURSE_ID"] == "stats-101" and values["JUPYTERHUB_API_TOKEN"] == "grader-token-value"


def test_the_hub_gives_each_group_its_rights(tmp_path):
    import os

    import yaml

    from tests.support.role_render import render

    variables = {"hub_course": "c", "hub_title": "C", "hub_connect_address": "10.1.2.3", "hub_image": "i",
                 "hub_mem_limit": "512M", "hub_cpu_limit": 0.5, "hub_service_token": "t"}
    scopes = teaching.group_scopes(grading=True)
    defaults = yaml.safe_load((ROOT / "roles" / "hub" / "defaults" / "main.yml").read_text())
    (tmp_path / "secrets.json").write_text('{"service_token": "t"}')
    variables["hub_config_dir"] = str(tmp_path)  # where the config reads its secrets from
    text = render("hub", "jupyterhub_config.py.j2", {**defaults, **variables, "hubfleet_private_address": "10.1.2.3",
                                                    "hub_group_scopes": {"teachers": scopes["teachers"]},
                                                    "hub_user_scopes": scopes[teaching.EVERYONE]}, tmp_path)
    config = {}

    class Section(dict):
        def __getattr__(self, name):
            return self.setdefault(name, [] if name in ("load_roles", "services") else Section())

        def __setattr__(self, name, value):
            self[name] = value

    namespace = {"get_config": lambda: config.setdefault("c", Section()), "load_subconfig": lambda path: None}
    exec(compile(text, "jupyterhub_config.py", "exec"), namespace)  # noqa: S102
    c = config["c"]
    roles = {r["name"]: r for r in c["JupyterHub"]["load_roles"]}
    assert roles["course-teachers"] == {"name": "course-teachers", "groups": ["teachers"], "scopes": scopes["teachers"]}
    assert roles["server"]["scopes"] == ["users:activity!user", "access:servers!server",
                                         "access:services!service=exchange"]
    assert c["JupyterHub"]["extra_user_scopes"] == ["access:services!service=exchange"]
