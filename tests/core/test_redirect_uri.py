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


@pytest.mark.parametrize("uri", ["https://app.example.com/cb", "http://127.0.0.1/cb", "http://[::1]:9/cb",
                                 "com.example.app:/cb"])
def test_registration_accepts(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize("uri", ["http://app.example.com/cb", "http://localhost/cb", "https://a.example/#x",
                                 "javascript:alert(1)", "myapp:/cb", "https:///cb", "/relative"])
def test_registration_refuses(uri: str) -> None:
    with pytest.raises(ValueError):
        validate_redirect_uri(uri)
