"""Which proxy the environment names for the Big service: the rules requests applied, read once per client."""

from __future__ import annotations

import pytest

from kws.rest.proxy import ProxyConfigError, bypasses_proxy, environment_proxy


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "direct"),
    [
        ("big.example.com", None, "example.com", True),  # a suffix
        ("big.example.com", None, ".example.com", True),  # a leading dot is allowed
        ("big.example.com", 8443, "big.example.com:8443", True),
        ("big.example.com", 8443, "big.example.com:9000", False),
        ("big.example.org", None, "example.com, localhost", False),
        ("10.1.2.3", None, "10.0.0.0/8", True),  # a CIDR block
        ("10.1.2.3", None, "10.1.2.3", True),
        ("11.1.2.3", None, "10.0.0.0/8,localhost", False),
        ("127.0.0.1", None, "localhost", False),  # names do not match addresses
        ("anything", 1, "*", True),
        ("big.example.com", None, "", False),
    ],
)
def test_no_proxy_rules(host: str, port: int | None, no_proxy: str, direct: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is direct


def test_the_scheme_names_the_proxy_lower_case_first_then_all_proxy() -> None:
    environ = {"HTTP_PROXY": "http://upper:3128", "http_proxy": "http://lower:3128", "ALL_PROXY": "http://all:3128"}
    assert environment_proxy("http://big:8080", environ) == ("http://lower:3128", {})
    assert environment_proxy("https://big:8443", environ) == ("http://all:3128", {})
    assert environment_proxy("https://big:8443", {}) is None
    assert environment_proxy("http://big:8080", {**environ, "NO_PROXY": "big"}) is None


def test_a_proxy_without_a_scheme_is_http_and_its_password_becomes_a_header() -> None:
    url, headers = environment_proxy("http://big", {"http_proxy": "user:p%3Ass@proxy:3128"})  # type: ignore[misc]
    assert url == "http://proxy:3128" and headers == {"Proxy-Authorization": "Basic dXNlcjpwOnNz"}  # user:p:ss


def test_http_proxy_from_a_cgi_request_is_not_trusted() -> None:
    environ = {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://attacker:80"}  # "httpoxy": a client's Proxy: header
    assert environment_proxy("http://big", environ) is None
    assert environment_proxy("http://big", {**environ, "http_proxy": "http://ours:3128"})[0] == "http://ours:3128"


def test_a_proxy_the_client_cannot_speak_is_a_clear_error() -> None:
    with pytest.raises(ProxyConfigError, match=r"\$all_proxy names a proxy this client cannot use \(socks5://"):
        environment_proxy("https://big", {"all_proxy": "socks5://proxy:1080"})
