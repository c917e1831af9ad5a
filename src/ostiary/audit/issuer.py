"""Audit an authorization server from the outside: its metadata and JWKS, then (optionally) a token obtained with
client credentials, then (optionally) a refresh token the user is willing to spend.

Everything here is an HTTP request any client could make; nothing of the server is imported.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._fetch_rules import is_loopback_url
from .._json import loads as json_loads
from ..core import jose
from ._http import new_client, url_problem, why
from .findings import Report

__all__ = ["IssuerAudit", "audit_issuer"]

_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_USER_SIGNING_ALGS = ("id_token_signing_alg_values_supported", "userinfo_signing_alg_values_supported",
                      "introspection_signing_alg_values_supported", "authorization_signing_alg_values_supported")
_MAX_LIFETIME = 3600


@dataclass
class IssuerAudit:
    """The inputs of an issuer audit. ``client_secret`` and ``refresh_token`` never appear in a report."""

    url: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    timeout: float = 10.0


def audit_issuer(spec: IssuerAudit, http: httpx.Client | None = None) -> Report:
    """Run every issuer check that the given inputs allow; see :mod:`ostiary.audit.findings` for the list."""
    report = Report(spec.url, "issuer")
    problem = url_problem(spec.url, "issuer")
    if problem:
        report.add("issuer.unreachable", problem)
        report.assessed = False
        return report
    client = http or new_client(spec.timeout)
    try:
        meta = _metadata(spec.url.rstrip("/"), client, report)
        if meta is None:
            report.assessed = False
            return report
        _check_metadata(spec.url.rstrip("/"), meta, report)
        _check_jwks(meta, client, report)
        _check_cors(meta, client, report)
        if spec.client_id and spec.client_secret:
            _check_client_credentials(spec, meta, client, report)
        if spec.refresh_token:
            _check_refresh(spec, meta, client, report)
        return report
    finally:
        if http is None:
            client.close()


def _metadata(issuer: str, client: httpx.Client, report: Report) -> dict[str, Any] | None:
    parts = urlsplit(issuer)
    urls = [issuer + "/.well-known/openid-configuration",
            f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path.rstrip('/')}"]
    tried = []
    for url in urls:
        try:
            response = client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            tried.append(f"{url}: {why(exc)}")
            continue
        if response.status_code != 200:
            tried.append(f"{url}: HTTP {response.status_code}")
            continue
        try:
            doc = json_loads(response.content)
        except ValueError:
            tried.append(f"{url}: not JSON")
            continue
        if isinstance(doc, dict):
            return doc
        tried.append(f"{url}: not a JSON object")
    report.add("issuer.unreachable", "no metadata document: " + "; ".join(tried))
    return None


def _strings(meta: Mapping[str, Any], name: str) -> list[str] | None:
    value = meta.get(name)
    if value is None:
        return None
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _check_metadata(issuer: str, meta: dict[str, Any], report: Report) -> None:
    named = str(meta.get("issuer", ""))
    if named.rstrip("/") != issuer:
        report.add("issuer.metadata-issuer-mismatch", f"metadata issuer is {named!r}, the URL audited is {issuer!r}")
    response_types = _strings(meta, "response_types_supported") or []
    implicit = [rt for rt in response_types if "token" in rt.split()]
    hybrid = [rt for rt in response_types if rt not in implicit and set(rt.split()) not in ({"code"}, {"none"})]
    grants = _strings(meta, "grant_types_supported") or []
    if implicit or "implicit" in grants:
        report.add("issuer.implicit", "response_types_supported lists " + ", ".join(repr(r) for r in implicit)
                   if implicit else "grant_types_supported lists 'implicit'")
    if hybrid:
        report.add("issuer.hybrid", "response_types_supported lists " + ", ".join(repr(r) for r in hybrid))
    if "password" in grants:
        report.add("issuer.password-grant", "grant_types_supported lists 'password'")
    if meta.get("authorization_endpoint"):
        methods = _strings(meta, "code_challenge_methods_supported")
        if methods is None:
            report.add("issuer.pkce-not-advertised", "the metadata has an authorization_endpoint but no "
                       "code_challenge_methods_supported")
        else:
            if "plain" in methods:
                report.add("issuer.pkce-plain", f"code_challenge_methods_supported is {methods}")
            if "S256" not in methods:
                report.add("issuer.pkce-no-s256", f"code_challenge_methods_supported is {methods}")
        auth_methods = _strings(meta, "token_endpoint_auth_methods_supported") or []
        if "none" in auth_methods and (methods is None or "S256" not in methods):
            report.add("issuer.public-clients-without-pkce",
                       "token_endpoint_auth_methods_supported lists 'none' and PKCE S256 is not advertised")
        if meta.get("authorization_response_iss_parameter_supported") is not True:
            report.add("issuer.no-iss-parameter", "authorization_response_iss_parameter_supported is not true")
    insecure = []
    for name, value in meta.items():
        if (name in ("issuer", "jwks_uri") or name.endswith("_endpoint")) and isinstance(value, str):
            scheme = urlsplit(value).scheme
            if scheme != "https" and not (scheme == "http" and is_loopback_url(value)):
                insecure.append(f"{name} = {value}")
    if insecure:
        report.add("issuer.not-https", "; ".join(insecure))
    nones = [n for n, v in meta.items() if n.endswith("_signing_alg_values_supported") and isinstance(v, list)
             and "none" in v and n != "request_object_signing_alg_values_supported"]
    if nones:
        report.add("issuer.alg-none", "'none' in " + ", ".join(nones))
    hmacs = [f"{n}: {', '.join(a for a in meta[n] if str(a).startswith('HS'))}" for n in _USER_SIGNING_ALGS
             if isinstance(meta.get(n), list) and any(str(a).startswith("HS") for a in meta[n])]
    if hmacs:
        report.add("issuer.alg-hmac", "; ".join(hmacs))
    if not meta.get("revocation_endpoint"):
        report.add("issuer.no-revocation", "no revocation_endpoint in the metadata")
    if not meta.get("dpop_signing_alg_values_supported") and meta.get(
            "tls_client_certificate_bound_access_tokens") is not True:
        report.add("issuer.no-sender-constraint", "neither dpop_signing_alg_values_supported nor "
                   "tls_client_certificate_bound_access_tokens in the metadata")


def _b64len_bits(value: object) -> int:
    if not isinstance(value, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def _check_jwks(meta: Mapping[str, Any], client: httpx.Client, report: Report) -> None:
    uri = meta.get("jwks_uri")
    if not isinstance(uri, str):
        report.add("issuer.jwks-unavailable", "no jwks_uri in the metadata")
        return
    try:
        response = client.get(uri, headers={"Accept": "application/json"})
        jwks = json_loads(response.content) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        report.add("issuer.jwks-unavailable", f"{uri}: {why(exc)}")
        return
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        report.add("issuer.jwks-unavailable", f"{uri}: HTTP {response.status_code}, no 'keys' array with keys")
        return
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            continue
        name = f"key {key.get('kid', i)!s}"
        private = [m for m in _PRIVATE_MEMBERS if m in key]
        if private or key.get("kty") == "oct":
            report.add("issuer.jwks-private-key", f"{name} ({key.get('kty')}) publishes "
                       + (", ".join(private) if private else "a symmetric key"))
        if key.get("kty") == "RSA":
            bits = _b64len_bits(key.get("n"))
            if bits < 2048:
                report.add("issuer.jwks-weak-key", f"{name} is RSA with a {bits}-bit modulus" if bits
                           else f"{name} is RSA with a missing or unreadable modulus n")


def _check_cors(meta: Mapping[str, Any], client: httpx.Client, report: Report) -> None:
    endpoint = meta.get("authorization_endpoint")
    if not isinstance(endpoint, str):
        return
    origin = "https://audit.invalid"
    try:
        got = client.get(endpoint, headers={"Origin": origin})
        pre = client.options(endpoint, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    except httpx.HTTPError:
        return
    for response, what in ((got, "GET"), (pre, "preflight")):
        allowed = response.headers.get("access-control-allow-origin")
        if allowed in ("*", origin):
            report.add("issuer.cors-authorize",
                       f"{what} with Origin {origin} got Access-Control-Allow-Origin: {allowed}")
            return


def _lifetime(body: Mapping[str, Any], claims: Mapping[str, Any] | None) -> int | None:
    # numeric_date: finite, within 64 bits (int() of NaN, Infinity or 1e400 from a hostile answer raises)
    expires_in = body.get("expires_in")
    if jose.numeric_date(expires_in):
        return int(expires_in)
    if isinstance(expires_in, str) and expires_in.isdigit() and len(expires_in) <= 18:
        return int(expires_in)
    if claims and jose.numeric_date(claims.get("exp")):
        start = claims.get("iat") if jose.numeric_date(claims.get("iat")) else claims.get("nbf")
        if jose.numeric_date(start):
            return int(claims["exp"] - start)
    return None


def _check_access_token(body: Mapping[str, Any], report: Report, how: str) -> None:
    token = body.get("access_token")
    claims: dict[str, Any] | None = None
    header: dict[str, Any] = {}
    if isinstance(token, str):
        try:
            header, claims = jose.decode_unverified(token)
        except jose.JoseError:
            claims = None  # an opaque token: only expires_in can be checked
    life = _lifetime(body, claims)
    if life is None:
        report.add("issuer.token-no-expiry", f"{how}: neither expires_in nor exp")
    elif life > _MAX_LIFETIME:
        report.add("issuer.long-lived-token", f"{how}: the access token lives {life} s ({life / 3600:g} h); "
                   "the right range is 900-3600 s")
    if claims is None:
        return
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud] if aud is not None else []
    if not auds:
        report.add("issuer.token-no-audience", f"{how}: the JWT access token has no aud claim")
    elif any(a in ("*", "") or (isinstance(a, str) and a.endswith("*")) for a in auds):
        report.add("issuer.token-wildcard-audience", f"{how}: aud is {aud!r}")
    typ = str(header.get("typ", ""))
    if typ.lower().removeprefix("application/") != "at+jwt":
        report.add("issuer.token-typ", f"{how}: the JWT header's typ is {typ or 'absent'!r}")


def _client_auth(spec: IssuerAudit, meta: Mapping[str, Any]) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Form fields and HTTP auth for the token endpoint: Basic when the server offers it (the default)."""
    if not spec.client_secret:
        return ({"client_id": spec.client_id} if spec.client_id else {}), None
    methods = _strings(meta, "token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" not in methods and "client_secret_post" in methods:
        return {"client_id": spec.client_id or "", "client_secret": spec.client_secret}, None
    return {}, httpx.BasicAuth(spec.client_id or "", spec.client_secret)


def _post_token(client: httpx.Client, endpoint: str, form: dict[str, str],
                auth: httpx.BasicAuth | None) -> httpx.Response:
    return client.post(endpoint, data=form, auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                       headers={"Accept": "application/json"})


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json_loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> str:
    body = _json(response)
    return f"HTTP {response.status_code}" + (f" {body['error']}" if isinstance(body.get("error"), str) else "")


def _bearer_error(response: httpx.Response) -> str | None:
    header = response.headers.get("www-authenticate", "")
    for code in ("invalid_token", "insufficient_scope", "invalid_request"):
        if f'error="{code}"' in header or f"error={code}" in header:
            return code
    return None


def _check_client_credentials(spec: IssuerAudit, meta: Mapping[str, Any], client: httpx.Client,
                              report: Report) -> None:
    endpoint = meta.get("token_endpoint")
    if not isinstance(endpoint, str):
        report.add("issuer.client-credentials-failed", "no token_endpoint in the metadata")
        report.assessed = False
        return
    form, auth = _client_auth(spec, meta)
    try:
        response = _post_token(client, endpoint, {"grant_type": "client_credentials", **form}, auth)
    except httpx.HTTPError as exc:
        report.add("issuer.client-credentials-failed", f"{endpoint}: {why(exc)}")
        report.assessed = False
        return
    body = _json(response)
    token = body.get("access_token")
    if response.status_code != 200 or not isinstance(token, str):
        report.add("issuer.client-credentials-failed", f"{endpoint} answered {_error(response)}"
                   + ("" if response.status_code != 200 else " without an access_token string"))
        report.assessed = False
        return
    if "no-store" not in response.headers.get("cache-control", "").lower():
        report.add("issuer.token-cacheable", "client_credentials token response: Cache-Control is "
                   f"{response.headers.get('cache-control', 'absent')!r}")
    _check_access_token(body, report, "client_credentials token")
    userinfo = meta.get("userinfo_endpoint")
    if not isinstance(userinfo, str):
        return
    try:
        none = client.get(userinfo)
        header = client.get(userinfo, headers={"Authorization": f"Bearer {token}"})
        query = client.get(userinfo, params={"access_token": token})
    except httpx.HTTPError:
        return
    if header.status_code == 200:
        report.add("issuer.service-token-as-user", f"GET {userinfo} with the service token answered 200")
    if query.status_code == 200:
        report.add("issuer.query-token", f"GET {userinfo}?access_token=... answered 200")
    elif _bearer_error(query) in ("invalid_token", "insufficient_scope") and _bearer_error(none) is None:
        # RFC 6750 §3.1: a request without a token gets no error code; this one got a verdict on the token,
        # so the server read it from the query string (and would accept a token it likes)
        report.add("issuer.query-token", f"GET {userinfo}?access_token=... answered HTTP {query.status_code} "
                   f"{_bearer_error(query)}: the token in the query string was read and judged")


def _check_refresh(spec: IssuerAudit, meta: Mapping[str, Any], client: httpx.Client, report: Report) -> None:
    endpoint = meta.get("token_endpoint")
    assert spec.refresh_token is not None
    if not isinstance(endpoint, str):
        report.add("issuer.refresh-failed", "no token_endpoint in the metadata")
        report.assessed = False
        return
    form, auth = _client_auth(spec, meta)

    def refresh(token: str) -> httpx.Response:
        return _post_token(client, endpoint, {"grant_type": "refresh_token", "refresh_token": token, **form}, auth)

    try:
        first = refresh(spec.refresh_token)
        body = _json(first)
        if first.status_code != 200 or not isinstance(body.get("access_token"), str):
            report.add("issuer.refresh-failed", f"the first refresh answered {_error(first)}")
            report.assessed = False
            return
        _check_access_token(body, report, "access token from the refresh")
        if "no-store" not in first.headers.get("cache-control", "").lower():
            report.add("issuer.token-cacheable", "refresh_token response: Cache-Control is "
                       f"{first.headers.get('cache-control', 'absent')!r}")
        new = body.get("refresh_token")
        if not isinstance(new, str) or new == spec.refresh_token:
            again = refresh(spec.refresh_token)
            report.add("issuer.refresh-not-rotated",
                       ("the refresh response carried no new refresh token" if not isinstance(new, str)
                        else "the refresh response returned the same refresh token")
                       + f"; using the old one again answered {_error(again)}")
            return
        reuse = refresh(spec.refresh_token)
        if reuse.status_code == 200:
            report.add("issuer.refresh-reuse-accepted", "the refresh token was rotated, but the spent one still "
                       "returned new tokens (HTTP 200)")
            return
        family = refresh(new)
        if family.status_code == 200:
            report.add("issuer.refresh-family-not-revoked", f"the spent token was refused ({_error(reuse)}), but "
                       "the refresh token issued in its place still works: a thief who spent it first keeps access")
        else:
            report.add("issuer.refresh-rotation-ok", f"rotated on use; the spent token was refused ({_error(reuse)}) "
                       f"and the family revoked (the newer token answered {_error(family)}). The refresh token "
                       "given is now spent: log in again.")
    except httpx.HTTPError as exc:
        report.add("issuer.refresh-failed", f"{endpoint}: {why(exc)}")
        report.assessed = False
