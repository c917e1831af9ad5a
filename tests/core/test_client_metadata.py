"""The rules of client ID metadata documents (core/client_metadata.py), without HTTP: what a document may say,
and what a URL may be. The fetch itself is tested over HTTP in tests/web/test_client_metadata.py."""

from __future__ import annotations

from typing import Any

import pytest

from ostiary.core.client_metadata import (
    ClientMetadataError,
    FetchedMetadata,
    client_from_document,
    metadata_document_url_problem,
    resolve_metadata_client,
)
from ostiary.core.policy import MetadataDocumentRules

URL = "https://agent.example.com/oauth/client.json"
RULES = MetadataDocumentRules(scopes=frozenset({"openid", "offline_access", "notes:read"}),
                              audiences=("https://mcp.example.com/mcp",), deny_domains=("evil.example",))


def doc(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"client_id": URL, "client_name": "Agent", "redirect_uris": ["http://127.0.0.1:9/cb"],
                         "grant_types": ["authorization_code", "refresh_token"]}
    d.update(kw)
    return d


def test_a_document_client_is_public_unvetted_and_never_first_party_or_admin() -> None:
    c = client_from_document(URL, doc(first_party=True, admin=True, scope="openid notes:read"), RULES)
    assert c.client_id == URL and c.is_public and c.token_endpoint_auth_method == "none"
    assert c.dynamic and c.metadata_document and not c.first_party and not c.admin
    assert c.scopes == {"openid", "notes:read"} and c.audiences == RULES.audiences
    assert c.grant_types == {"authorization_code", "refresh_token"}
    assert not c.dpop_bound_access_tokens


def test_a_document_may_ask_for_dpop_bound_tokens() -> None:
    """RFC 9449 §5.2: the client says its access tokens are always DPoP-bound; the token endpoint then refuses
    a request without a proof, as for a registered client."""
    assert client_from_document(URL, doc(dpop_bound_access_tokens=True), RULES).dpop_bound_access_tokens


@pytest.mark.parametrize(("change", "reason"), [
    ({"client_id": URL + "x"}, "client_id is not its URL"),
    ({"client_id": None}, "client_id is not its URL"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "only public clients"),
    ({"client_secret": "s3cret"}, "client_secret is not allowed"),
    ({"jwks_uri": "https://agent.example.com/jwks"}, "jwks_uri is not allowed"),
    ({"redirect_uris": []}, "redirect_uris is required"),
    ({"redirect_uris": "http://127.0.0.1:9/cb"}, "array of strings"),
    ({"redirect_uris": ["https://*.example.com/cb"]}, "wildcard"),
    ({"redirect_uris": ["com.example.app:/cb"]}, "https or http"),
    ({"grant_types": ["client_credentials"]}, "grant_types"),
    ({"scope": "openid admin"}, "scope not allowed: admin"),
    ({"dpop_bound_access_tokens": "yes"}, "dpop_bound_access_tokens must be true or false"),
])
def test_refused_documents(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ClientMetadataError, match=reason):
        client_from_document(URL, doc(**change), RULES)


@pytest.mark.parametrize(("url", "reason"), [
    ("https://agent.example.com", "path"),
    ("https://agent.example.com/", "path"),
    ("https://agent.example.com/a/./b", "dot segments"),
    ("https://user@agent.example.com/c", "user-info"),
    ("https://agent.example.com/c#x", "fragment"),
    ("https://evil.example/c", "deny-listed"),
    ("https://a.b.evil.example/c", "deny-listed"),
    ("https://agent.example.com/" + "x" * 300, "longer than"),
])
def test_refused_urls(url: str, reason: str) -> None:
    problem = metadata_document_url_problem(url, RULES)
    assert problem is not None and reason in problem


def test_allow_list() -> None:
    rules = MetadataDocumentRules(allow_domains=("example.com",))
    assert metadata_document_url_problem("https://agent.example.com/c", rules) is None
    assert metadata_document_url_problem("https://notexample.com/c", rules) == "the domain is not on the allow list"


class _Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


class _Resolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.calls = 0

    async def resolve(self, url: str) -> FetchedMetadata:
        self.calls += 1
        return FetchedMetadata(self.document, fetched=self.calls == 1)


async def test_accepted_first_fetch_and_every_refusal_are_audited() -> None:
    sink, resolver = _Sink(), _Resolver(doc())
    assert await resolve_metadata_client(URL, RULES, resolver, sink, 1.0) is not None
    assert await resolve_metadata_client(URL, RULES, resolver, sink, 2.0) is not None  # cached: not again
    assert [e.type for e in sink.events] == ["client_metadata.fetched"]
    assert await resolve_metadata_client("https://evil.example/c", RULES, resolver, sink, 3.0) is None
    assert resolver.calls == 2  # a deny-listed domain is never fetched
    refused = sink.events[-1]
    assert refused.type == "client_metadata.refused" and refused.detail["reason"] == "the domain is deny-listed"
    # off: nothing is fetched, and nothing recorded
    assert await resolve_metadata_client(URL, None, resolver, sink, 4.0) is None
    assert resolver.calls == 2 and len(sink.events) == 2
