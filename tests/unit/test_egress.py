"""Egress: the descriptor's mode, the site's indexes and blocked networks, what roles/egress and the hub are given,
and the firewall rules and proxy filter the role writes (rendered here from its own templates)."""

from __future__ import annotations

import json
import re

import jinja2
import pytest
import yaml
from click.testing import CliRunner

from hubfleet import egress
from hubfleet.changes import compare
from hubfleet.cli import cli
from hubfleet.errors import InvalidInput
from hubfleet.flavors import load_catalogue
from hubfleet.providers.base import Host
from hubfleet.site import SiteWide, parse_site_wide
from hubfleet.sizing import plan_course
from tests.support.descriptors import STATS, stats_course
from tests.support.modules import ROOT

HUB = Host(name="stats-101-hub", role="hub", address="203.0.113.7", ssh_port=22, private_address="10.20.0.5")
WORKER = Host(name="stats-101-w1", role="worker", address="127.0.0.1", ssh_port=2222, private_address="10.20.0.6")
TEMPLATES = ROOT / "roles" / "egress" / "templates"


course = stats_course


def variables(mode: str, site: dict | None = None, hosts=(HUB, WORKER)) -> dict:
    site_wide = parse_site_wide(site or {})
    return egress.role_variables(course(egress=mode), site_wide.egress, site_wide.addresses.engine_bridge,
                                 [str(net) for _, net in site_wide.addresses.ranges()], list(hosts))


def render(template: str, values: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True,
                             trim_blocks=True)  # Ansible's template module trims blocks the same way
    env.filters["regex_escape"] = re.escape
    defaults = yaml.safe_load((ROOT / "roles" / "egress" / "defaults" / "main.yml").read_text())
    return env.get_template(template).render(**{**defaults, **values})


def rules(mode: str, **site) -> list[str]:
    return [line for line in render("egress.rules.j2", variables(mode, site)).splitlines()
            if line and not line.startswith("#")]


def chain(lines: list[str], name: str) -> list[str]:
    return [line.removeprefix(f"-A {name} ") for line in lines if line.startswith(f"-A {name} ")]


def test_a_course_that_says_nothing_gets_package_index_and_a_bad_mode_names_the_field_and_the_choices():
    assert course().egress == "package-index"
    assert {course(egress=mode).egress for mode in egress.MODES} == set(egress.MODES)
    for bad in ("closed", "Open", "", None, ["open"]):
        with pytest.raises(InvalidInput) as caught:
            course(egress=bad)
        (problem,) = caught.value.problems
        assert problem.path == "egress"
        assert all(mode in problem.message for mode in egress.MODES), problem.message


@pytest.mark.parametrize(("site", "path", "words"), [
    ({"package_indexes": ["https://pypi.org/simple"]}, "egress.package_indexes", "host name only"),
    ({"package_indexes": ["2001:db8::1"]}, "egress.package_indexes", "IPv6"),
    ({"package_indexes": ["pypi org"]}, "egress.package_indexes", "not a host name"),
    ({"package_indexes": "pypi.org"}, "egress.package_indexes", "list"),
    ({"operator_networks": ["10.0.0.1/8"]}, "egress.operator_networks", "not an IPv4 range"),
    ({"operator_networks": ["fd00::/8"]}, "egress.operator_networks", "IPv6"),
    ({"proxy_port": 80}, "egress.proxy_port", "1024"),
    ({"proxy": "squid"}, "egress.proxy", "unknown field"),
])
def test_a_bad_site_egress_names_the_field(site, path, words):
    with pytest.raises(InvalidInput) as caught:
        parse_site_wide({"egress": site})
    found = [(p.path, p.message) for p in caught.value.problems]
    assert any(p.startswith(path) and words.lower() in m.lower() for p, m in found), found


def test_the_site_lists_each_index_once_in_lower_case_and_defaults_to_pypi_conda_and_debian():
    assert SiteWide().egress.package_indexes[:2] == ["pypi.org", "files.pythonhosted.org"]
    site = parse_site_wide({"egress": {"package_indexes": ["PyPI.org", "pypi.org", "203.0.113.10", "mirror.example.edu"]}})
    assert site.egress.package_indexes == ["pypi.org", "203.0.113.10", "mirror.example.edu"]


def test_blocked_networks_hold_the_metadata_address_the_engine_ranges_and_every_host_of_the_course():
    site = parse_site_wide({"egress": {"operator_networks": ["192.0.2.0/24"]}})
    blocked = egress.blocked_networks(site.egress, [str(net) for _, net in site.addresses.ranges()], [HUB, WORKER])
    assert blocked[0] == "192.0.2.0/24"
    for expected in ("169.254.169.254/32", "198.18.0.0/24", "198.19.0.0/16", "10.20.0.5/32", "10.20.0.6/32",
                     "203.0.113.7/32"):
        assert expected in blocked
    assert "127.0.0.1/32" not in blocked, "a Docker host's SSH address (this machine's loopback) is nobody's route"
    # Within the defaults (RFC 1918, link-local, 198.18.0.0/15) nothing is listed twice.
    default = egress.blocked_networks(SiteWide().egress, ["198.18.0.0/24", "198.19.0.0/16"], [HUB, WORKER])
    assert "10.20.0.5/32" not in default and "169.254.169.254/32" not in default and "198.19.0.0/16" not in default
    assert {"10.0.0.0/8", "169.254.0.0/16", "198.18.0.0/15", "172.16.0.0/12", "192.168.0.0/16"} <= set(default)
    assert "203.0.113.7/32" in default, "a host's public address is blocked too, whatever range it is in"


def test_the_hub_gets_the_proxy_in_package_index_only_and_servers_keep_the_hub_api_and_exchange():
    for mode in egress.MODES:
        values = variables(mode)
        assert values["egress_mode"] == mode
        assert values["egress_course_services"] == ["10.20.0.5:8081", "10.20.0.5:8082"]
        assert values["egress_bridge_address"] == "198.18.0.1" and values["egress_bridge_network"] == "198.18.0.0/24"
        assert values["hub_egress_proxy"] == ("http://198.18.0.1:3128" if mode == "package-index" else "")
    moved = variables("package-index", {"addresses": {"engine_bridge": "100.96.0.1/24"}, "egress": {"proxy_port": 8118}})
    assert moved["hub_egress_proxy"] == "http://100.96.0.1:8118"


def test_in_every_mode_other_containers_the_hosts_and_blocked_networks_are_refused_and_the_hub_is_not():
    for mode in egress.MODES:
        lines = rules(mode)
        out, host = chain(lines, "HUBFLEET-EGRESS"), chain(lines, "HUBFLEET-EGRESS-HOST")
        assert out[0] == "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
        assert out[1] == "-o docker0 -j REJECT --reject-with icmp-admin-prohibited", "no container reaches another"
        hub_api = "-d 10.20.0.5/32 -p tcp -m tcp --dport 8081 -j ACCEPT"
        first_block = next(i for i, rule in enumerate(out) if rule.startswith("-d ") and "REJECT" in rule)
        assert out.index(hub_api) < first_block, "the hub API is let through before the blocked networks"
        for network in ("10.0.0.0/8", "169.254.0.0/16", "198.18.0.0/15"):
            assert f"-d {network} -j REJECT --reject-with icmp-admin-prohibited" in out
        assert host[0] == "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
        assert hub_api in host
        assert host[-2:] == ["-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT --reject-with icmp-admin-prohibited"]
        assert lines[0] == "*filter" and lines[-1] == "COMMIT"


def test_only_open_lets_the_rest_through_only_package_index_reaches_the_proxy_only_open_resolves_names():
    verdicts = {mode: chain(rules(mode), "HUBFLEET-EGRESS")[-1] for mode in egress.MODES}
    assert verdicts == {"open": "-j RETURN", "package-index": "-j REJECT --reject-with icmp-admin-prohibited",
                        "none": "-j REJECT --reject-with icmp-admin-prohibited"}
    proxy = "-d 198.18.0.1/32 -p tcp -m tcp --dport 3128 -j ACCEPT"
    for mode in egress.MODES:
        lines = rules(mode)
        assert (proxy in chain(lines, "HUBFLEET-EGRESS-HOST")) == (mode == "package-index")
        dns = [rule for rule in lines if "HUBFLEET-EGRESS-DNS" in rule and rule.startswith("-A")]
        assert bool(dns) == (mode == "open")
        if mode == "open":  # the resolvers before the blocked networks (a campus resolver is in 10.0.0.0/8)
            out = chain(lines, "HUBFLEET-EGRESS")
            assert out.index("-p udp -m udp --dport 53 -j HUBFLEET-EGRESS-DNS") < out.index(
                "-d 10.0.0.0/8 -j REJECT --reject-with icmp-admin-prohibited")


def test_the_rules_name_the_bridge_the_program_applies_them_to():
    text = render("egress.rules.j2", variables("none"))
    assert re.search(r"^# bridge: docker0$", text, re.M)
    program = (ROOT / "roles" / "egress" / "files" / "hubfleet-egress").read_text()
    assert "iptables-restore --noflush" in program and "DOCKER-USER" in program and "INPUT" in program


def test_the_proxy_allows_the_listed_hosts_exactly():
    text = render("tinyproxy-indexes.j2", {"egress_package_indexes": ["pypi.org", "files.pythonhosted.org",
                                                                      "203.0.113.10"]})
    patterns = [re.compile(line, re.I) for line in text.splitlines() if line and not line.startswith("#")]

    def allowed(host: str) -> bool:
        return any(p.search(host) for p in patterns)

    assert allowed("pypi.org") and allowed("files.pythonhosted.org") and allowed("203.0.113.10")
    for refused in ("pypi.org.attacker.example", "evilpypi.org", "pypixorg", "203.0.113.100", "files-pythonhosted.org"):
        assert not allowed(refused), refused
    config = render("tinyproxy.conf.j2", variables("package-index"))
    assert "Listen 198.18.0.1" in config and "Allow 198.18.0.0/24" in config and "FilterDefaultDeny Yes" in config


def test_plan_says_the_egress_and_plan_diff_says_the_firewall_changes_at_once(tmp_path):
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump({**STATS, "egress": "none"}))
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    shown = runner.invoke(cli, [*state, "plan", str(path)], catch_exceptions=False)
    assert "egress: none — nothing outside the hub" in shown.output
    path.write_text(yaml.safe_dump(STATS))
    planned = json.loads(runner.invoke(cli, [*state, "plan", str(path), "--json"], catch_exceptions=False).output)
    assert planned["egress"]["mode"] == "package-index" and "pypi.org" in planned["egress"]["package_indexes"]

    old, new = course(egress="open"), course()
    plan = plan_course(old, load_catalogue("docker"))
    (change,) = compare(old, new, plan, plan)
    assert change.path == "egress" and change.shown == "open → package-index"
    assert "at once" in change.effect and "next server start" in change.effect
