"""Exact redirect URI matching, with RFC 8252 §7.3's any-port rule for loopback IP literals only."""

from __future__ import annotations

import pytest

from ostiary.core.redirect_uri import match_redirect_uri, validate_redirect_uri

REG = ("https://app.example.com/cb", "http://127.0.0.1/callback", "http://[::1]:8080/cb", "com.example.app:/oauth")


@pytest.mark.parametrize("uri", ["https://app.example.com/cb", "http://127.0.0.1/callback",
                                 "http://127.0.0.1:51000/callback", "http://[::1]/cb", "http://[::1]:1/cb",
                                 "com.example.app:/oauth"])
def test_matches(uri: str) -> None:
    assert match_redirect_uri(uri, REG)


@pytest.mark.parametrize("uri", ["https://app.example.com/cb/", "https://app.example.com/cb?x=1",
                                 "https://APP.example.com/cb", "https://app.example.com:443/cb",
                                 "http://app.example.com/cb", "http://localhost/callback",
                                 "http://localhost:5000/callback", "http://127.0.0.1:51000/callback/x",
                                 "http://127.0.0.1:51000/other", "http://127.0.0.2/callback",
                                 "http://127.0.0.1:abc/callback", "http://user@127.0.0.1/callback",
                                 "https://app.example.com/cb#frag", "com.example.app:/oauth/x", ""])
def test_does_not_match(uri: str) -> None:
    assert not match_redirect_uri(uri, REG)


#: Variants of a registered URI that a lenient comparison would accept: every one must be refused
#: (RFC 9700 §4.1.3, OAuth 2.1 §2.3.1: simple string comparison; only a loopback port may vary, RFC 8252 §7.3).
LOOPBACK = "http://127.0.0.1:8400/cb"
HTTPS = "https://app.example.com/cb"
VARIANTS = {
    "scheme-upper": ("HTTP://127.0.0.1:8400/cb", "HTTPS://app.example.com/cb"),
    "scheme-mixed": ("Http://127.0.0.1:8400/cb", "hTTps://app.example.com/cb"),
    "host-upper": ("http://LOCALHOST:8400/cb", "https://APP.EXAMPLE.COM/cb"),
    "host-mixed": ("http://127.000.000.001:8400/cb", "https://App.example.com/cb"),
    "host-trailing-dot": ("http://127.0.0.1.:8400/cb", "https://app.example.com./cb"),
    "host-expanded": ("http://[0:0:0:0:0:0:0:1]:8400/cb", "https://app.example.com:443/cb"),
    "path-upper": ("http://127.0.0.1:8400/CB", "https://app.example.com/CB"),
    "path-mixed": ("http://127.0.0.1:8400/Cb", "https://app.example.com/cB"),
    "trailing-slash": ("http://127.0.0.1:8400/cb/", "https://app.example.com/cb/"),
    "dot-segment": ("http://127.0.0.1:8400/./cb", "https://app.example.com/./cb"),
    "dot-dot-segment": ("http://127.0.0.1:8400/x/../cb", "https://app.example.com/x/../cb"),
    "trailing-dot-segment": ("http://127.0.0.1:8400/cb/.", "https://app.example.com/cb/."),
    "percent-encoded": ("http://127.0.0.1:8400/%63b", "https://app.example.com/%63b"),
    "percent-encoded-upper": ("http://127.0.0.1:8400/c%62", "https://app.example.com/c%62"),
    "percent-encoded-slash": ("http://127.0.0.1:8400%2Fcb", "https://app.example.com%2Fcb"),
    "userinfo": ("http://user@127.0.0.1:8400/cb", "https://user@app.example.com/cb"),
    "userinfo-password": ("http://u:p@127.0.0.1:8400/cb", "https://u:p@app.example.com/cb"),
    "userinfo-port-confusion": ("http://127.0.0.1:8400@127.0.0.1/cb",
                                "https://app.example.com:443@app.example.com/cb"),
    "empty-port": ("http://127.0.0.1:/cb", "https://app.example.com:/cb"),
    "non-ascii-port": ("http://127.0.0.1:\u0668\u0664\u0660\u0660/cb", "https://app.example.com/cb\u200b"),
    "port-too-big": ("http://127.0.0.1:65536/cb", "https://app.example.com:8400/cb"),
    "backslash": ("http://127.0.0.1:8400\\cb", "https://app.example.com\\cb"),
    "query-added": ("http://127.0.0.1:8400/cb?x=1", "https://app.example.com/cb?x=1"),
    "empty-query": ("http://127.0.0.1:8400/cb?", "https://app.example.com/cb?"),
    "fragment": ("http://127.0.0.1:8400/cb#x", "https://app.example.com/cb#x"),
    "whitespace": ("http://127.0.0.1:8400/cb ", " https://app.example.com/cb"),
    "tab-in-port": ("http://127.0.0.1:84\t00/cb", "https://app.example.com/c\tb"),
    "https-loopback": ("https://127.0.0.1:8400/cb", "http://app.example.com/cb"),
}


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_variants_of_a_registered_uri_do_not_match(kind: str) -> None:
    loopback, https = VARIANTS[kind]
    assert not match_redirect_uri(loopback, [LOOPBACK])
    assert not match_redirect_uri(https, [HTTPS])


@pytest.mark.parametrize("port", ["", ":1", ":80", ":8400", ":65535", ":08400"])
def test_only_the_port_of_a_loopback_uri_may_vary(port: str) -> None:
    assert match_redirect_uri(f"http://127.0.0.1{port}/cb", [LOOPBACK])
    assert match_redirect_uri(f"http://[::1]{port}/cb", ["http://[::1]:8400/cb"])
    assert not match_redirect_uri(f"http://[::1]{port}/cb", [LOOPBACK])  # the address itself may not


@pytest.mark.parametrize("uri", ["https://app.example.com/cb", "http://127.0.0.1/cb", "http://[::1]:9/cb",
                                 "com.example.app:/cb"])
def test_registration_accepts(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize("uri", ["http://app.example.com/cb", "http://localhost/cb", "https://a.example/#x",
                                 "javascript:alert(1)", "myapp:/cb", "https:///cb", "/relative"])
def test_registration_refuses(uri: str) -> None:
    with pytest.raises(ValueError):
        validate_redirect_uri(uri)
