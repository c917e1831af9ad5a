"""DeviceLogin holds ``verification_uri_complete`` (printed and QR-encoded by ``ostiary login``) to the same https
rule as ``verification_uri`` (RFC 8628 §3.3.1). The issuer here is a hostile stand-in (httpx.MockTransport):
what it answers is outside the project."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ostiary.client import DeviceLogin, DiscoveryError, OAuthError

ISSUER = "https://issuer.example"


def login(complete: Any) -> DeviceLogin:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/"):
            return httpx.Response(200, json={"issuer": ISSUER, "token_endpoint": ISSUER + "/token",
                                             "device_authorization_endpoint": ISSUER + "/device_authorization"})
        body = {"device_code": "d", "user_code": "ABCD-EFGH", "verification_uri": ISSUER + "/device",
                "expires_in": 600, "interval": 5}
        if complete is not None:
            body["verification_uri_complete"] = complete
        return httpx.Response(200, json=body)

    return DeviceLogin(ISSUER, "cli", http_client=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("complete", ["http://evil.example/device?user_code=ABCD-EFGH",
                                      "javascript:alert(1)", "file:///etc/passwd"])
def test_non_https_verification_uri_complete_is_refused(complete: str) -> None:
    with pytest.raises(DiscoveryError, match="verification_uri_complete"):
        login(complete).start()


def test_verification_uri_complete_must_be_a_string() -> None:
    with pytest.raises(OAuthError, match="incomplete"):
        login(["https://issuer.example/device"]).start()


@pytest.mark.parametrize("complete", [ISSUER + "/device?user_code=ABCD-EFGH", None])
def test_https_or_absent_verification_uri_complete_is_kept(complete: str | None) -> None:
    assert login(complete).start().verification_uri_complete == complete
