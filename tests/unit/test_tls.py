"""hubfleet/tls.py and the pure parts of hubfleet/providers/docker/acme_local.py: no Docker, no network."""

from __future__ import annotations

import datetime as dt
import os
import socket
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hubfleet import tls
from hubfleet.providers.docker import acme_local
from hubfleet.descriptor import parse_course
from hubfleet.errors import InvalidInput
from hubfleet.providers import Host

NOW = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
DOCKER_HUB = Host("c-hub", "hub", "127.0.0.1", 2201, private_address="172.18.0.2", http_port=32080, https_port=32443)
CLOUD_HUB = Host("c-hub", "hub", "203.0.113.7", 22, private_address="10.0.0.5")


def make_pair(tmp_path: Path, names: list[str], *, days: tuple[int, int] = (-10, 80), tag: str = "a",
              now: dt.datetime = NOW) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "nobody")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1])))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp_path / f"{tag}.crt", tmp_path / f"{tag}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def course_with(workshop_data: dict, tls_settings: dict | None, domain: str = "queues.hub.example.edu"):
    data = {**workshop_data, "domain": domain, "tls": tls_settings}
    if tls_settings is None:
        del data["tls"]
    return parse_course(data)


def file_problems(course) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        tls.check_files(course, now=NOW)
    assert "tls is not valid" in str(info.value)
    return {p.path: p.message for p in info.value.problems}


# --- the institution's own certificate ------------------------------------------------------


def test_a_good_certificate_passes(tmp_path, workshop_data):
    cert, key = make_pair(tmp_path, ["queues.hub.example.edu"])
    tls.check_files(course_with(workshop_data, {"certificate": str(cert), "key": str(key)}), now=NOW)


def test_a_wildcard_covers_one_label_only(tmp_path, workshop_data):
    cert, key = make_pair(tmp_path, ["*.hub.example.edu"])
    tls.check_files(course_with(workshop_data, {"certificate": str(cert), "key": str(key)}), now=NOW)
    deeper = course_with(workshop_data, {"certificate": str(cert), "key": str(key)}, domain="a.queues.hub.example.edu")
    assert "tls.certificate" in file_problems(deeper)


def test_a_key_that_does_not_match_names_tls_key(tmp_path, workshop_data):
    cert, _ = make_pair(tmp_path, ["queues.hub.example.edu"], tag="a")
    _, other_key = make_pair(tmp_path, ["queues.hub.example.edu"], tag="b")
    found = file_problems(course_with(workshop_data, {"certificate": str(cert), "key": str(other_key)}))
    assert list(found) == ["tls.key"]
    assert "does not match the certificate" in found["tls.key"]


def test_a_certificate_for_another_name_names_tls_certificate(tmp_path, workshop_data):
    cert, key = make_pair(tmp_path, ["intranet.example.edu"])
    found = file_problems(course_with(workshop_data, {"certificate": str(cert), "key": str(key)}))
    assert found == {"tls.certificate": "is for intranet.example.edu, not for the course's domain "
                                        "queues.hub.example.edu"}


def test_an_expired_certificate_is_refused(tmp_path, workshop_data):
    cert, key = make_pair(tmp_path, ["queues.hub.example.edu"], days=(-100, -1))
    found = file_problems(course_with(workshop_data, {"certificate": str(cert), "key": str(key)}))
    assert found["tls.certificate"].startswith("expired on 2027-02-28")


def test_unreadable_and_non_pem_files_are_named(tmp_path, workshop_data):
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    found = file_problems(course_with(workshop_data, {"certificate": str(junk), "key": str(junk)}))
    assert "holds no PEM certificate" in found["tls.certificate"]
    cert, _ = make_pair(tmp_path, ["queues.hub.example.edu"])
    found = file_problems(course_with(workshop_data, {"certificate": str(cert), "key": str(tmp_path / "absent.key")}))
    assert found["tls.key"].startswith(f"cannot read {tmp_path / 'absent.key'}")


def test_an_encrypted_key_is_refused_with_the_fix(tmp_path, workshop_data):
    cert, key_path = make_pair(tmp_path, ["queues.hub.example.edu"])
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"secret-pass")))
    found = file_problems(course_with(workshop_data, {"certificate": str(cert), "key": str(key_path)}))
    assert "is encrypted" in found["tls.key"] and "secret-pass" not in found["tls.key"]


def test_acme_courses_need_no_file_check(workshop_data):
    tls.check_files(course_with(workshop_data, {"acme_server": "local", "email": "ops@example.edu"}), now=NOW)


# --- role variables and URLs ------------------------------------------------------------------


@pytest.mark.parametrize("provider, server", [("docker", "local"), ("openstack", "letsencrypt")])
def test_without_tls_a_course_gets_https_from_its_providers_acme_server(workshop_data, provider, server):
    course = course_with({**workshop_data, "provider": provider}, None)
    assert course.tls.acme_server == server and course.tls.email is None
    variables = tls.role_variables(course, [DOCKER_HUB if provider == "docker" else CLOUD_HUB])
    assert variables["tls_enabled"] is True and variables["tls_mode"] == "acme" and variables["tls_acme_email"] == ""
    assert tls.public_url(course, [DOCKER_HUB]) == "https://queues.hub.example.edu:32443"
    assert tls.public_url(course, [CLOUD_HUB]) == "https://queues.hub.example.edu"
    assert tls.summary(course)["url"] == "https://queues.hub.example.edu"
    # ACME settings without a server get the provider's, with their email kept.
    course = course_with({**workshop_data, "provider": provider}, {"email": "ops@example.edu"})
    assert (course.tls.acme_server, course.tls.email) == (server, "ops@example.edu")


@pytest.mark.parametrize("off", [None, False, "off", "http"])
def test_https_cannot_be_turned_off(workshop_data, off):
    with pytest.raises(InvalidInput) as info:
        parse_course({**workshop_data, "tls": off})
    (problem,) = info.value.problems
    assert problem.path == "tls" and problem.message.startswith("HTTPS cannot be turned off")


def test_local_acme_on_docker_hosts(workshop_data):
    course = course_with(workshop_data, {"acme_server": "local", "email": "ops@example.edu"},
                         domain="workshop.hub.localhost")
    variables = tls.role_variables(course, [DOCKER_HUB])
    assert variables["tls_mode"] == "acme" and variables["tls_acme_email"] == "ops@example.edu"
    assert "tls_acme_directory" not in variables, "the embedded server's URL comes from ensure_ready"
    assert variables["proxy_tls_certificate"] == "/etc/letsencrypt/live/workshop.hub.localhost/fullchain.pem"
    assert variables["proxy_tls_key"] == "/etc/letsencrypt/live/workshop.hub.localhost/privkey.pem"
    assert variables["proxy_https_port"] == 32443
    assert tls.public_url(course, [DOCKER_HUB]) == "https://workshop.hub.localhost:32443"
    assert tls.trust(Path("/state"), course) == "/state/acme-local/root.pem"


@pytest.mark.parametrize("server,directory", [
    ("letsencrypt", "https://acme-v02.api.letsencrypt.org/directory"),
    ("letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
    ("https://acme.example.edu/directory", "https://acme.example.edu/directory"),
])
def test_public_acme_servers(workshop_data, server, directory):
    course = course_with(workshop_data, {"acme_server": server, "email": "ops@example.edu"})
    variables = tls.role_variables(course, [CLOUD_HUB])
    assert variables["tls_acme_directory"] == directory and variables["proxy_https_port"] == 443
    assert tls.public_url(course, [CLOUD_HUB]) == "https://queues.hub.example.edu"
    assert tls.trust(Path("/state"), course) is True


def test_files_mode_points_nginx_at_the_copies(tmp_path, workshop_data):
    cert, key = make_pair(tmp_path, ["queues.hub.example.edu"])
    variables = tls.role_variables(course_with(workshop_data, {"certificate": str(cert), "key": str(key)}),
                                   [CLOUD_HUB])
    assert variables["tls_mode"] == "files"
    assert variables["tls_certificate_source"] == str(cert) and variables["tls_key_source"] == str(key)
    assert variables["proxy_tls_certificate"] == "/etc/hubfleet/tls/queues.hub.example.edu/fullchain.pem"
    assert "BEGIN" not in str(variables), "no key or certificate content goes into the inventory"


# --- reaching a hub by name, DNS answers --------------------------------------------------------


def test_reaching_maps_only_the_course_domain_and_only_inside(workshop_data):
    # Own certificate files: no CA of the course's to add, only the name to map.
    course = course_with(workshop_data, {"certificate": "c.pem", "key": "k.pem"}, domain="t-unit.hub.localhost")
    with tls.reaching(Path("/nonexistent"), course, [DOCKER_HUB]):
        assert socket.getaddrinfo("t-unit.hub.localhost", 443)[0][4][0] == "127.0.0.1"
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("t-unit.hub.localhost", 443)


def test_trusting_adds_the_course_ca_to_the_bundle_the_environment_names(tmp_path, monkeypatch):
    system, ca = tmp_path / "system.pem", tmp_path / "root.pem"
    system.write_text("SYSTEM\n")
    ca.write_text("COURSE\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(system))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with tls.trusting(ca):
        assert Path(os.environ["REQUESTS_CA_BUNDLE"]).read_text().split() == ["SYSTEM", "COURSE"]
        assert "CURL_CA_BUNDLE" not in os.environ
    assert os.environ["REQUESTS_CA_BUNDLE"] == str(system)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with tls.trusting(ca):
        assert Path(os.environ["REQUESTS_CA_BUNDLE"]).read_text().rstrip().endswith("COURSE")
    assert "REQUESTS_CA_BUNDLE" not in os.environ


def test_dns_answers_are_read_with_name_compression():
    query_id = 0x1234
    question = b"\x01x\x03hub\x09localhost\x00" + struct.pack(">HH", 1, 1)
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + socket.inet_aton("172.18.0.2")
    message = struct.pack(">HHHHHH", query_id, 0x8180, 1, 1, 0, 0) + question + answer
    assert acme_local._a_records(message, query_id) == ["172.18.0.2"]
    assert acme_local._a_records(message, 0x9999) == [], "an answer to another query is ignored"


def test_served_certificate_warns_before_expiry_and_flags_foreign_ones(tmp_path, workshop_data, monkeypatch):
    course = course_with(workshop_data, {"acme_server": "local", "email": "ops@example.edu"},
                         domain="workshop.hub.localhost")
    for names, days, expect_problem, expect_warning in [
        (["workshop.hub.localhost"], 10, False, True),
        (["localhost"], 80, True, False),
        (["workshop.hub.localhost"], 80, False, False),
    ]:
        cert, _ = make_pair(tmp_path, names, days=(-1, days))
        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
        monkeypatch.setattr(tls, "_peer_certificate", lambda address, port, domain, der=der: der)
        monkeypatch.setattr(tls, "_verifies", lambda *args: (True, ""))
        served = tls.served_certificate(tmp_path, course, [DOCKER_HUB], now=NOW)
        assert bool(served.problems) is expect_problem, served
        assert bool(served.warnings) is expect_warning, served
        assert served.days_left == days


def test_a_port_that_refuses_is_reachable_but_the_check_needs_an_answer_or_a_refusal():
    """A stock host has no nginx before the roles run: its refusal proves the path to port 80 is open."""
    import socket

    from hubfleet.tls import _port_reachable

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    assert _port_reachable("127.0.0.1", port, timeout=2)
    listening.close()  # nothing listens now: the kernel refuses, the path is still open
    assert _port_reachable("127.0.0.1", port, timeout=2)
    assert not _port_reachable("name-that-does-not-resolve.invalid", 80, timeout=2)
