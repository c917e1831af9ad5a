"""Signed authorization request objects (JAR, RFC 9101), accepted at ``/par`` and ``/authorize``.

A client that registered public keys (``jwks`` or ``jwks_uri``: the keys its ``private_key_jwt`` assertions are
checked with) may send its authorization request as a JWT in the ``request`` parameter. The rules:

* signed with one of the client's keys, by an asymmetric algorithm from the allow-list (never ``none``, never
  HMAC with the client secret: RFC 9101 §10.2 leaves HMAC open, we do not); in FAPI 2.0 mode PS256, ES256 or
  EdDSA only (FAPI 2.0 Security Profile §5.4.1);
* ``typ`` absent, ``JWT`` or ``oauth-authz-req+jwt`` (RFC 9101 §4, §10.8);
* ``iss`` is the client id and ``aud`` the issuer identifier, alone (RFC 9101 §4, §10.2);
* ``exp`` is required, in the future and at most ``request_object_max_lifetime`` (1 hour) away; ``nbf``, when
  present, is not in the future nor older than that; ``iat`` is not in the future; in FAPI 2.0 mode ``nbf`` is
  required and ``exp`` at most that hour after it (FAPI 2.0 Message Signing, as FAPI 1.0 Advanced §5.2.2);
* ``client_id`` inside, when present, equals the outer ``client_id`` (RFC 9101 §5);
* it carries neither ``request`` nor ``request_uri``.

Its claims then *replace* the outer parameters entirely (RFC 9101 §6.3): only ``client_id`` is kept from outside.
Errors are ``invalid_request_object`` (RFC 9101 §6.3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import jose
from .client_auth import assertion_audience_ok, load_client_keys
from .clients import Client
from .errors import InvalidRequestObject
from .fapi import fapi2_algs
from .policy import ServerPolicy
from .requests import storable_text
from .storage import JwksFetcher

__all__ = ["REQUEST_OBJECT_ALGS", "REQUEST_OBJECT_TYPES", "open_request_object"]

#: advertised as ``request_object_signing_alg_values_supported`` (asymmetric only)
REQUEST_OBJECT_ALGS = ("ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA")
REQUEST_OBJECT_TYPES = ("jwt", "oauth-authz-req+jwt")
#: JWT claims that describe the request object itself, not the authorization request
_ENVELOPE = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti", "sub"})
#: parameters that may appear several times (RFC 8707 ``resource``): a JSON array in the request object
_MULTI = frozenset({"resource"})
#: parameters whose value is JSON (OIDC Core §5.5 ``claims``, RFC 9396 §2 ``authorization_details``): an object or
#: array in the request object, its JSON text in a form; taken as that text, so both are handled alike
_JSON_VALUED = frozenset({"claims", "authorization_details"})


async def open_request_object(token: str, client: Client, policy: ServerPolicy, fetcher: JwksFetcher | None,
                              now: float) -> tuple[tuple[str, str], ...]:
    """Verify the request object and return its authorization parameters (the outer ``client_id`` first)."""
    try:
        header, _ = jose.decode_unverified(token)
    except jose.JoseError as exc:
        raise InvalidRequestObject("the request object is not a signed JWT", debug=str(exc)) from exc
    algs = fapi2_algs(REQUEST_OBJECT_ALGS) if policy.fapi2 else REQUEST_OBJECT_ALGS
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algs:
        raise InvalidRequestObject("the request object must be signed with one of " + ", ".join(algs)
                                   + (" (FAPI 2.0 mode)" if policy.fapi2 else " (not none, not HMAC)"))
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str)
                            or typ.lower().removeprefix("application/") not in REQUEST_OBJECT_TYPES):
        raise InvalidRequestObject("the request object's typ must be oauth-authz-req+jwt")
    try:
        keys = await load_client_keys(client, fetcher, force=False)
    except LookupError as exc:
        raise InvalidRequestObject("this client has registered no keys: it cannot send request objects") from exc
    except (jose.JoseError, OSError, ValueError) as exc:
        raise InvalidRequestObject("the client's keys cannot be loaded", debug=type(exc).__name__) from exc
    keys = [k for k in keys if k.alg in algs]
    try:
        verified = _verify(token, keys, client, policy, now)
    except jose.JoseError as exc:
        if "no key matches" in str(exc) and client.jwks_uri and not client.jwks:
            try:
                keys = [k for k in await load_client_keys(client, fetcher, force=True) if k.alg in algs]
                verified = _verify(token, keys, client, policy, now)
            except (jose.JoseError, OSError, ValueError, LookupError) as exc2:
                raise InvalidRequestObject(f"request object rejected: {exc2}"[:200]) from exc2
        else:
            raise InvalidRequestObject(f"request object rejected: {exc}"[:200]) from exc
    return _parameters(verified.claims, client, policy, now)


def _verify(token: str, keys: list[jose.PublicJwk], client: Client, policy: ServerPolicy,
            now: float) -> jose.VerifiedJwt:
    return jose.verify_jwt(token, keys, issuer=client.client_id, audience=None, leeway=policy.leeway, now=now,
                           require=("exp", "iss", "aud"))


def _parameters(claims: Mapping[str, Any], client: Client, policy: ServerPolicy,
                now: float) -> tuple[tuple[str, str], ...]:
    if not assertion_audience_ok(claims.get("aud"), policy.issuer):
        raise InvalidRequestObject("the request object's aud must be the issuer identifier alone")
    limit = policy.request_object_max_lifetime + policy.leeway
    exp = claims["exp"]
    if exp - now > limit:
        raise InvalidRequestObject(f"the request object's exp is more than {policy.request_object_max_lifetime} "
                                   "seconds away")
    nbf = claims.get("nbf")
    if nbf is not None and now - nbf > limit:
        raise InvalidRequestObject(f"the request object's nbf is more than {policy.request_object_max_lifetime} "
                                   "seconds old")
    if policy.fapi2:  # FAPI 2.0 Message Signing (FAPI 1.0 Advanced §5.2.2-13, -17): nbf required, exp - nbf bounded
        if nbf is None:
            raise InvalidRequestObject("FAPI 2.0 mode: the request object must carry nbf")
        if exp - nbf > policy.request_object_max_lifetime:
            raise InvalidRequestObject(f"FAPI 2.0 mode: the request object's exp is more than "
                                       f"{policy.request_object_max_lifetime} seconds after its nbf")
    inner_id = claims.get("client_id")
    if inner_id is not None and inner_id != client.client_id:
        raise InvalidRequestObject("client_id in the request object differs from the request's client_id")
    out: list[tuple[str, str]] = [("client_id", client.client_id)]
    for name, value in claims.items():
        if name in _ENVELOPE or name == "client_id":
            continue
        if name in ("request", "request_uri"):
            raise InvalidRequestObject(f"a request object cannot contain {name}")
        if name in _JSON_VALUED and isinstance(value, dict | list):
            out.append((name, _json_text(name, value)))
            continue
        values = value if name in _MULTI and isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise InvalidRequestObject(f"the request object's {name[:40]!r} must be a string")
            text = str(v)
            if not (storable_text(name) and storable_text(text)):
                raise InvalidRequestObject("the request object's parameters must be text: no NUL character, no "
                                           "lone surrogate (\\ud800-\\udfff)")
            out.append((name, text))
    return tuple(out)


def _json_text(name: str, value: object) -> str:
    """A JSON-valued parameter as a form would carry it: its compact JSON text."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestObject(f"the request object's {name!r} is not valid JSON") from exc
