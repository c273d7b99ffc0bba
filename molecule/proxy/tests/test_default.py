"""testinfra: nginx answers and forwards websockets the way the hub needs."""


def test_nginx_runs_and_is_enabled(host):
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled


def test_site_forwards_websockets_with_long_timeouts(host):
    conf = host.file("/etc/nginx/sites-enabled/hub.conf")
    assert conf.is_symlink
    text = host.file("/etc/nginx/sites-available/hub.conf").content_string
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "proxy_read_timeout 3600s;" in text
    assert "server_name molecule.hub.localhost;" in text
    assert "frame-ancestors 'self' https://lms.example.edu" in text
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_config_is_valid_and_port_80_listens(host):
    assert host.run("nginx -t").rc == 0
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_upstream_down_gives_bad_gateway_not_default_page(host):
    # No hub behind it in this scenario: nginx must answer 502 from our site, not serve a default page.
    code = host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/")
    assert code == "502"


def test_one_content_security_policy_nginx_s_only_when_the_hub_sends_none(host):
    # The hub is down here, so the 502 page is nginx's own: it carries nginx's policy, once.
    headers = host.check_output("curl -s -D - -o /dev/null http://127.0.0.1/")
    assert headers.lower().count("content-security-policy:") == 1
    assert "frame-ancestors 'self' https://lms.example.edu" in headers
