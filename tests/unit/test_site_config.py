"""The site file's OpenStack settings: validation names the field and the fix; credentials are refused."""

from __future__ import annotations

import pytest

from hubfleet.errors import InvalidInput
from hubfleet.providers.openstack.settings import OpenStackSite, json_schema
from hubfleet.providers.openstack.settings import load_openstack_site as load_site
from hubfleet.providers.openstack.settings import parse_openstack_site as parse_site
from hubfleet.site import SITE_ENV, site_path

MINIMAL = {"image": "debian-12", "external_network": "public", "operator_cidr": "198.51.100.7/32"}


def problems(data) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        parse_site(data)
    return {p.path: p.message for p in err.value.problems}


def test_minimal_site_takes_the_defaults():
    site = parse_site(MINIMAL)
    assert site.engine == "sdk" and site.wait_ssh is True and site.network is None
    assert site.subnet_cidr == "10.42.0.0/24" and site.ssh_user == "debian" and site.flavors == []
    assert site.host_image == "auto"


def test_every_field_has_a_description():
    schema = json_schema()
    assert schema["additionalProperties"] is False
    missing = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    assert missing == []


def test_unknown_field_is_named_with_the_known_ones():
    found = problems({**MINIMAL, "engnie": "sdk"})
    assert "engnie" in found and "unknown field" in found["engnie"] and "engine" in found["engnie"]


def test_missing_required_fields_are_all_named():
    assert set(problems({})) == {"image", "external_network", "operator_cidr"}


@pytest.mark.parametrize("key", ["password", "auth", "application_credential_secret"])
def test_credentials_in_the_site_file_are_refused_and_point_to_clouds_yaml(key):
    found = problems({**MINIMAL, key: "s3cret"})
    assert "clouds.yaml" in found[key]
    with pytest.raises(InvalidInput) as err:
        parse_site({**MINIMAL, key: "s3cret"})
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("cidr, words", [
    ("0.0.0.0/0", "whole internet"), ("::/0", "whole internet"), ("not-a-net", "is not a network"),
])
def test_operator_cidr_must_be_a_real_narrow_range(cidr, words):
    assert words in problems({**MINIMAL, "operator_cidr": cidr})["operator_cidr"]


def test_operator_cidr_is_normalised():
    assert parse_site({**MINIMAL, "operator_cidr": "198.51.100.7"}).operator_cidr == "198.51.100.7/32"
    assert parse_site({**MINIMAL, "operator_cidr": "2001:db8::1/64"}).operator_cidr == "2001:db8::/64"


def test_bad_values_each_name_their_field():
    found = problems({**MINIMAL, "engine": "pulumi", "subnet_cidr": "10.0.0.0/30", "dns_nameservers": ["dns"],
                      "dns_zone": "not a zone", "ssh_timeout": 1})
    assert "sdk" in found["engine"] and "terraform" in found["engine"]
    assert "/28 or larger" in found["subnet_cidr"]
    assert "not an IP address" in found["dns_nameservers"]
    assert "DNS name" in found["dns_zone"]
    assert "ssh_timeout" in found


def test_dns_zone_gets_its_trailing_dot():
    assert parse_site({**MINIMAL, "dns_zone": "Hub.Example.edu"}).dns_zone == "hub.example.edu."


def test_cloud_name_falls_back_to_os_cloud(monkeypatch):
    monkeypatch.setenv("OS_CLOUD", "from-env")
    assert parse_site(MINIMAL).cloud_name() == "from-env"
    assert parse_site({**MINIMAL, "cloud": "from-file"}).cloud_name() == "from-file"
    monkeypatch.delenv("OS_CLOUD")
    assert parse_site(MINIMAL).cloud_name() is None


def test_site_file_is_read_from_the_environment_then_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(SITE_ENV, raising=False)
    assert site_path(tmp_path) == tmp_path / "site.yaml"
    (tmp_path / "site.yaml").write_text("image: debian-12\nexternal_network: public\noperator_cidr: 192.0.2.0/24\n")
    assert isinstance(load_site(tmp_path), OpenStackSite)
    other = tmp_path / "other.yaml"
    other.write_text("image: ubuntu-24.04\nexternal_network: ext\noperator_cidr: 192.0.2.0/24\nengine: terraform\n")
    monkeypatch.setenv(SITE_ENV, str(other))
    assert load_site(tmp_path).engine == "terraform"


def test_missing_or_broken_site_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(SITE_ENV, raising=False)
    with pytest.raises(InvalidInput, match="no such file: .*site.yaml — write one .see docs/openstack.md"):
        load_site(tmp_path)
    (tmp_path / "site.yaml").write_text("image: [unclosed\n")
    with pytest.raises(InvalidInput, match="line 2, column 1: not valid YAML"):
        load_site(tmp_path)
    (tmp_path / "site.yaml").write_text("- a list\n")
    with pytest.raises(InvalidInput, match="top level must be a mapping"):
        load_site(tmp_path)
