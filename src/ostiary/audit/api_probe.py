"""Audit an API (a resource server) from the outside: given one token it accepts, send forged variants and report
each one it wrongly accepts.

First the genuine token must be accepted and a request without a token refused; otherwise the API is reported as
not assessed (a dead or always-401 API proves nothing). Then:

- signature checks, with the genuine claims: ``alg: none``; HS256 keyed with the issuer's public key; signature
  stripped, corrupted; payload changed; a ``kid`` the issuer never published; keys named by the token itself
  (``jku``, ``jwk``, ``x5u``, ``x5c``, pointing at the audit's own attacker issuer on a loopback port); the issuer
  swapped for that attacker issuer;
- claim checks (expired, not yet valid, wrong ``aud``, an unknown ``crit``, ``typ`` not ``at+jwt``, a missing
  scope): these need a token the API would otherwise accept, so they use the first forgery the API fell for, or
  the extra genuine tokens the user gives (a token for another API, an ID token); when there is neither, the API
  verifies signatures properly and the report says which claim checks could not be tried;
- transport: the token in the query string; a bad token in the header with the genuine one in the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization

from .._json import loads as json_loads
from ..core import jose
from ._attacker import Attacker, attacker_issuer
from ._http import new_client, url_problem, why
from .findings import Report

__all__ = ["ApiAudit", "audit_api"]

Forge = Callable[[dict[str, Any], dict[str, Any]], str]  # (header changes, claims) -> token
OTHER_AUDIENCE = "https://other-api.audit.invalid"
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@dataclass
class ApiAudit:
    url: str
    issuer: str
    token: str = field(repr=False)
    extra_tokens: Sequence[str] = field(default=(), repr=False)
    method: str = "GET"
    scope: str | None = None
    timeout: float = 10.0
    user_route: bool = False  # the route acts for a user: a service token must be refused (mistake 6)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(obj: Mapping[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class _Probe:
    def __init__(self, spec: ApiAudit, client: httpx.Client, report: Report) -> None:
        self.spec, self.client, self.report = spec, client, report

    def send(self, token: str | None, *, where: str = "header") -> httpx.Response:
        headers: dict[str, str] = {}
        params: dict[str, str] = {}
        content: bytes | None = None
        if where == "header" and token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif where == "query" and token is not None:
            params["access_token"] = token
        elif where == "body" and token is not None:
            headers["Authorization"] = "Bearer aW52YWxpZC10b2tlbg"  # "invalid-token": unparseable as a JWT
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = f"access_token={token}".encode()
        return self.client.request(self.spec.method, self.spec.url, headers=headers, params=params, content=content)

    def accepted(self, token: str | None, *, where: str = "header") -> tuple[bool, str]:
        try:
            r = self.send(token, where=where)
        except httpx.HTTPError as exc:
            return False, why(exc)
        return 200 <= r.status_code < 400, f"HTTP {r.status_code}"


def _issuer_keys(issuer: str, client: httpx.Client) -> list[dict[str, Any]]:
    """The issuer's published keys (OpenID discovery, else RFC 8414 metadata); none when unreachable."""
    parts = urlsplit(issuer)
    for url in (issuer.rstrip("/") + "/.well-known/openid-configuration",
                f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path.rstrip('/')}"):
        try:
            meta = json_loads(client.get(url).content)
            jwks = json_loads(client.get(str(meta["jwks_uri"])).content)
            return [k for k in jwks.get("keys", []) if isinstance(k, dict)]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return []


def _public_pems(keys: list[dict[str, Any]]) -> list[tuple[str | None, bytes]]:
    out = []
    for parsed in jose.parse_jwks({"keys": keys}):
        pem = parsed.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        out.append((parsed.kid, pem))
    return out


def audit_api(spec: ApiAudit, http: httpx.Client | None = None, attacker_host: str = "127.0.0.1") -> Report:
    report = Report(spec.url, "api")
    problem = url_problem(spec.url, "API URL") or url_problem(spec.issuer, "--issuer")
    if not problem and not _B64TOKEN.fullmatch(spec.token):
        problem = "the token is not a bearer token (RFC 6750 §2.1 b64token characters only)"
    if problem:
        report.add("api.not-assessed", problem)
        report.assessed = False
        return report
    client = http or new_client(spec.timeout)
    try:
        probe = _Probe(spec, client, report)
        ok, status = probe.accepted(spec.token)
        if not ok:
            report.add("api.not-assessed", f"the genuine token was not accepted ({status}): give a route and a token "
                       "the API accepts")
            report.assessed = False
            return report
        anonymous, status = probe.accepted(None)
        if anonymous:
            report.add("api.not-assessed", f"a request without any token was accepted too ({status}): give a route "
                       "that requires a token")
            report.assessed = False
            return report
        with attacker_issuer(attacker_host) as attacker:
            _run(spec, probe, attacker, report)
        still, status = probe.accepted(spec.token)
        if not still:  # rate-limited, expired or down mid-way: a refusal of a forgery proved nothing
            report.add("api.not-assessed", f"the genuine token was no longer accepted at the end ({status}): "
                       "the refusals seen may not be the API's checks; run again with a fresh token")
            report.assessed = False
        return report
    finally:
        if http is None:
            client.close()


def _run(spec: ApiAudit, probe: _Probe, attacker: Attacker, report: Report) -> None:
    token = spec.token
    try:
        header, claims = jose.decode_unverified(token)
        h64, p64, s64 = token.split(".")
    except (jose.JoseError, ValueError):
        _transport(probe, token, report)
        report.add("api.claims-not-assessed", "the token is not a JWT (opaque): only the transport checks apply")
        return
    typ = str(header.get("typ", "at+jwt"))
    forgers: list[tuple[str, Forge]] = []  # forgeries the API accepted, usable for the claim checks

    def try_variant(check: str, description: str, forge: Forge | None, tok: str) -> bool:
        ok, status = probe.accepted(tok)
        if ok:
            report.add(check, f"{status} for a token with {description}")
            if forge is not None:
                forgers.append((description, forge))
        return ok

    # -- signature: alg none
    def forge_none(h: dict[str, Any], c: dict[str, Any]) -> str:
        return f"{_b64json({**header, **h, 'alg': 'none'})}.{_b64json(c)}."

    for alg in ("none", "None", "NONE"):
        none_token = f"{_b64json({**header, 'alg': alg})}.{p64}."
        if try_variant("api.alg-none", f"alg {alg!r} and no signature", forge_none, none_token):
            break
    # -- signature: HS256 keyed with the issuer's public key (algorithm confusion)
    keys = _issuer_keys(spec.issuer, probe.client)
    for kid, pem in _public_pems(keys):
        def forge_hmac(h: dict[str, Any], c: dict[str, Any], kid: str | None = kid, pem: bytes = pem) -> str:
            head = {**header, **h, "alg": "HS256", **({"kid": kid} if kid else {})}
            signing_input = f"{_b64json(head)}.{_b64json(c)}"
            return signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())

        if try_variant("api.hmac-public-key", f"HS256 keyed with the issuer's public key {kid!r}", forge_hmac,
                       forge_hmac({}, claims)):
            break
    # -- signature stripped, corrupted; payload changed
    try_variant("api.signature-stripped", "the signature removed",
                lambda h, c: f"{_b64json({**header, **h})}.{_b64json(c)}.", f"{h64}.{p64}.")
    sig = bytearray(_unb64(s64))
    if sig:
        sig[len(sig) // 2] ^= 0x01
    try_variant("api.signature-corrupted", "one bit of the signature flipped", None, f"{h64}.{p64}.{_b64(bytes(sig))}")
    tampered = {**claims, "ostiary_audit": "tampered"}
    try_variant("api.payload-tampered", "a claim added after signing (original signature kept)",
                lambda h, c: f"{_b64json({**header, **h})}.{_b64json(c)}.{s64}", f"{h64}.{_b64json(tampered)}.{s64}")
    # -- keys the issuer never published
    unknown_kid = "unknown-" + secrets.token_hex(4)
    try_variant("api.unknown-kid", f"kid {unknown_kid!r} (not in the issuer's JWKS), signed by the audit's key",
                lambda h, c: attacker.sign(c, typ=h.get("typ", typ), kid=unknown_kid,
                                           headers={k: v for k, v in h.items() if k != "typ"}),
                attacker.sign(claims, typ=typ, kid=unknown_kid))
    for name, extra in (("jku", {"jku": attacker.jwks_url}), ("jwk", {"jwk": attacker.jwk}),
                        ("x5u", {"x5u": attacker.x5u_url}), ("x5c", {"x5c": [attacker.cert_der_b64()]})):
        def forge_key(h: dict[str, Any], c: dict[str, Any], extra: dict[str, Any] = extra) -> str:
            return attacker.sign(c, typ=h.get("typ", typ),
                                 headers={**extra, **{k: v for k, v in h.items() if k != "typ"}})

        try_variant("api.key-from-token", f"a {name} header naming the audit's own key ({attacker.base})",
                    forge_key, forge_key({}, claims))
    # -- another issuer
    def forge_issuer(h: dict[str, Any], c: dict[str, Any]) -> str:
        return attacker.sign({**c, "iss": attacker.base}, typ=h.get("typ", typ),
                             headers={k: v for k, v in h.items() if k != "typ"})

    try_variant("api.any-issuer", f"iss {attacker.base!r} (the audit's own issuer, with its own discovery and JWKS)",
                forge_issuer, forge_issuer({}, claims))
    _claims(spec, probe, report, header, claims, forgers)
    _transport(probe, token, report)


def _aud_set(claims: Mapping[str, Any]) -> set[str]:
    aud = claims.get("aud")
    return {str(a) for a in aud} if isinstance(aud, list) else {str(aud)} if aud is not None else set()


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    scope, scp = claims.get("scope"), claims.get("scp")
    out = set(scope.split()) if isinstance(scope, str) else set()
    return out | ({str(s) for s in scp} if isinstance(scp, list) else set())


def _is_service(claims: Mapping[str, Any]) -> bool:
    """A client-credentials token: RFC 9068 §2.2 sets sub to the client's id; no user signed in (no auth_time)."""
    return claims.get("sub") is not None and claims.get("sub") == claims.get("client_id") \
        and "auth_time" not in claims


def _claims(spec: ApiAudit, probe: _Probe, report: Report, header: dict[str, Any], claims: dict[str, Any],
            forgers: list[tuple[str, Forge]]) -> None:
    now = int(time.time())
    tried: set[str] = set()

    def check(check_id: str, description: str, tok: str, how: str) -> None:
        tried.add(check_id)
        ok, status = probe.accepted(tok)
        if ok:
            report.add(check_id, f"{status} for {description} ({how})")

    if spec.user_route and _is_service(claims):
        tried.add("api.service-token-on-user-route")
        report.add("api.service-token-on-user-route", "the genuine token is a client-credentials token (sub = "
                   "client_id, no auth_time) and this user route accepted it")
    # genuine tokens given by the user: the strongest evidence, tried first
    for i, extra in enumerate(spec.extra_tokens, start=2):
        if not _B64TOKEN.fullmatch(extra):
            continue
        try:
            xh, xc = jose.decode_unverified(extra)
        except jose.JoseError:
            continue
        how = f"a genuine token from stdin line {i}"
        if spec.user_route and _is_service(xc) and _aud_set(xc) & _aud_set(claims):
            check("api.service-token-on-user-route", "a client-credentials token (sub = client_id)", extra, how)
        elif _aud_set(xc) and not (_aud_set(xc) & _aud_set(claims)):
            check("api.wrong-audience", f"aud {sorted(_aud_set(xc))} instead of {sorted(_aud_set(claims))}", extra,
                  how)
        elif str(xh.get("typ", "")).lower().removeprefix("application/") != "at+jwt":
            check("api.typ-not-checked", f"typ {xh.get('typ')!r}", extra, how)
        elif isinstance(xc.get("exp"), int | float) and xc["exp"] < now:
            check("api.expired", "an expired token", extra, how)
        elif spec.scope and spec.scope not in _scopes(xc):
            check("api.scope-not-checked", f"a token without scope {spec.scope!r}", extra, how)
    variants: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("api.expired", "a token that expired an hour ago", {},
         {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        ("api.not-yet-valid", "a token valid only from an hour from now", {},
         {**claims, "iat": now + 3600, "nbf": now + 3600, "exp": now + 7200}),
        ("api.wrong-audience", f"aud {OTHER_AUDIENCE!r}", {}, {**claims, "aud": OTHER_AUDIENCE}),
        ("api.crit-ignored", "crit naming an unknown extension", {"crit": ["urn:ostiary-audit:unknown"],
                                                                  "urn:ostiary-audit:unknown": True}, claims),
        ("api.typ-not-checked", "typ 'JWT' (as an ID token has)", {"typ": "JWT"}, claims),
    ]
    if spec.scope:
        fewer = {**claims}
        if isinstance(claims.get("scope"), str):
            fewer["scope"] = " ".join(s for s in claims["scope"].split() if s != spec.scope)
        if isinstance(claims.get("scp"), list):
            fewer["scp"] = [s for s in claims["scp"] if s != spec.scope]
        variants.append(("api.scope-not-checked", f"a token without scope {spec.scope!r}", {}, fewer))
    if spec.user_route and not _is_service(claims):
        service = {k: v for k, v in claims.items() if k != "auth_time"}
        service["sub"] = claims.get("client_id") or "service-client"
        service["client_id"] = service["sub"]
        variants.append(("api.service-token-on-user-route", "a client-credentials token (sub = client_id)", {},
                         service))
    if forgers:
        how_desc, forge = forgers[0]
        for check_id, description, head, body in variants:
            if check_id in {f.check.id for f in report.findings}:
                continue
            check(check_id, description, forge(head, body), f"forged with {how_desc}, which the API accepts")
    untried = [cid.removeprefix("api.") for cid, *_ in variants if cid not in tried]
    if untried:
        report.add("api.claims-not-assessed",
                   f"not tried: {', '.join(untried)}. The API refused every forged signature, so only the issuer can "
                   "mint these; give genuine tokens on further stdin lines (e.g. one for another audience, an ID "
                   "token) to try them")


def _transport(probe: _Probe, token: str, report: Report) -> None:
    ok, status = probe.accepted(token, where="query")
    if ok:
        report.add("api.query-token", f"{status} for the genuine token in ?access_token= with no Authorization header")
    ok, status = probe.accepted(token, where="body")
    if ok:
        report.add("api.body-token-wins", f"{status} for an invalid token in the Authorization header and the genuine "
                   "one in a form body (access_token=)")
