"""The JOSE wrapper (core/jose.py), the only module that touches the JOSE library: sign/verify round trips for
every algorithm, the registered-claim checks, ``typ``, ``crit``, key selection by ``kid``, JWKS parsing and
RFC 7638 thumbprints. Issue 11 item 9."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
import pytest

from ostiary.core import jose
from ostiary.core.jose import JoseError

NOW = 1_700_000_000
ISS = "https://id.example.com"
AUD = "https://api.example.com"


def _key(alg: str) -> Any:
    """A private key for ``alg`` (generate_private_key covers the three the server signs with)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if alg in ("ES256", "RS256", "EdDSA"):
        return jose.generate_private_key(alg)  # type: ignore[arg-type]
    if alg.startswith("ES"):
        return ec.generate_private_key({"ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg])
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _claims(**kw: Any) -> dict[str, Any]:
    claims = {"iss": ISS, "aud": AUD, "sub": "u1", "iat": NOW, "nbf": NOW, "exp": NOW + 300, "jti": "j1"}
    claims.update(kw)
    return {k: v for k, v in claims.items() if v is not None}


def _keys(key: Any, kid: str = "k1", alg: str | None = None) -> list[jose.PublicJwk]:
    return jose.parse_jwks({"keys": [jose.public_jwk(key, kid, alg)]})


@pytest.mark.parametrize("alg", sorted(jose.ASYMMETRIC_ALGS))
def test_sign_and_verify_round_trip_for_every_algorithm(alg: str) -> None:
    key = _key(alg)
    token = jose.sign_jwt(_claims(), key, alg=alg, kid="k1", typ="at+jwt")
    verified = jose.verify_jwt(token, _keys(key, alg=alg), issuer=ISS, audience=AUD, typ="at+jwt", now=NOW + 1)
    assert dict(verified.claims) == _claims()
    assert verified.header["alg"] == alg and verified.header["kid"] == "k1"
    assert verified.key.alg == alg
    # one flipped signature byte, and the token is refused
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 1
    forged = f"{head}.{payload}." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(JoseError, match="signature"):
        jose.verify_jwt(forged, _keys(key, alg=alg), now=NOW + 1)


def test_the_fast_signer_agrees_with_pyjwt() -> None:
    for alg in ("ES256", "RS256", "EdDSA"):
        key = _key(alg)
        token = jose.sign_jwt(_claims(), key, alg=alg, kid="k1")
        public = key.public_key()
        assert jwt.decode(token, public, algorithms=[alg], audience=AUD, options={"verify_exp": False}) == _claims()


@pytest.mark.parametrize("alg", ["none", "HS256", "", None])
def test_unsigned_and_symmetric_algorithms_are_refused(alg: str | None) -> None:
    key = _key("ES256")
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "k1"}).encode()).decode().rstrip("=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).decode().rstrip("=")
    with pytest.raises(JoseError, match="algorithm not allowed"):
        jose.verify_jwt(f"{header}.{body}.", _keys(key), now=NOW)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!.??.**", "x" * 20_000])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(JoseError):
        jose.verify_jwt(token, _keys(_key("ES256")), now=NOW)


def test_typ_is_checked_with_or_without_the_application_prefix() -> None:
    key = _key("ES256")
    for typ in ("at+jwt", "application/at+jwt", "AT+JWT"):
        token = jose.sign_jwt(_claims(), key, alg="ES256", kid="k1", typ=typ)
        assert jose.verify_jwt(token, _keys(key), typ="at+jwt", now=NOW).claims["sub"] == "u1"
    token = jose.sign_jwt(_claims(), key, alg="ES256", kid="k1", typ="JWT")
    with pytest.raises(JoseError, match="wrong token type"):
        jose.verify_jwt(token, _keys(key), typ="at+jwt", now=NOW)  # an id_token is not an access token


def test_issuer_and_audience() -> None:
    key = _key("ES256")
    keys = _keys(key)
    token = jose.sign_jwt(_claims(aud=[AUD, "https://other.example.com"]), key, alg="ES256", kid="k1")
    assert jose.verify_jwt(token, keys, issuer=ISS, audience=AUD, now=NOW)
    with pytest.raises(JoseError, match="wrong issuer"):
        jose.verify_jwt(token, keys, issuer="https://evil.example.com", now=NOW)
    with pytest.raises(JoseError, match="wrong audience"):
        jose.verify_jwt(token, keys, audience="https://third.example.com", now=NOW)
    no_iss = jose.sign_jwt(_claims(iss=None), key, alg="ES256", kid="k1")
    with pytest.raises(JoseError):
        jose.verify_jwt(no_iss, keys, issuer=ISS, now=NOW)


def test_exp_nbf_and_iat_against_the_injected_clock_and_leeway() -> None:
    key = _key("ES256")
    keys = _keys(key)
    token = jose.sign_jwt(_claims(), key, alg="ES256", kid="k1")
    assert jose.verify_jwt(token, keys, now=NOW + 299)
    with pytest.raises(JoseError, match="expired"):
        jose.verify_jwt(token, keys, now=NOW + 300)  # exp is the first instant it is no longer valid
    assert jose.verify_jwt(token, keys, now=NOW + 320, leeway=30)
    with pytest.raises(JoseError, match="expired"):
        jose.verify_jwt(token, keys, now=NOW + 330, leeway=30)
    with pytest.raises(JoseError, match="not yet valid"):
        jose.verify_jwt(jose.sign_jwt(_claims(nbf=NOW + 60, iat=NOW), key, alg="ES256", kid="k1"), keys, now=NOW)
    with pytest.raises(JoseError, match="iat is in the future"):
        jose.verify_jwt(jose.sign_jwt(_claims(iat=NOW + 60, nbf=None), key, alg="ES256", kid="k1"), keys, now=NOW)
    assert jose.verify_jwt(jose.sign_jwt(_claims(iat=NOW + 20, nbf=None), key, alg="ES256", kid="k1"), keys,
                           now=NOW, leeway=30)
    with pytest.raises(JoseError, match="missing claim exp"):
        jose.verify_jwt(jose.sign_jwt(_claims(exp=None), key, alg="ES256", kid="k1"), keys, now=NOW)
    with pytest.raises(JoseError, match="missing claim jti"):
        jose.verify_jwt(jose.sign_jwt(_claims(jti=None), key, alg="ES256", kid="k1"), keys, now=NOW,
                        require=("exp", "jti"))
    with pytest.raises(JoseError):
        jose.verify_jwt(jose.sign_jwt(_claims(exp="later"), key, alg="ES256", kid="k1"), keys, now=NOW)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_time_claim_that_is_not_a_finite_number_is_refused(claim: str, value: float) -> None:
    """JSON as Python reads it may carry NaN and Infinity; NaN compares false with every time, so a NaN exp would
    never expire (and a NaN iat or nbf would pass any window). PyJWT signs them as the literals NaN / Infinity."""
    key = _key("ES256")
    token = jwt.encode(_claims(**{claim: value}), key, algorithm="ES256", headers={"kid": "k1"})
    assert ("NaN" if value != value else "Infinity") in base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
    with pytest.raises(JoseError):
        jose.verify_jwt(token, _keys(key), now=NOW)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [10**400, -(10**400), 2**63], ids=["10**400", "-10**400", "2**63"])
def test_a_time_claim_beyond_64_bits_is_refused(claim: str, value: int) -> None:
    """``json.loads`` reads an integer of any length; comparing it with a float time is exact, but any arithmetic
    with one (``exp + leeway``) converts it, and ``float(10**400)`` raises OverflowError: a 500, before."""
    key = _key("ES256")
    token = jwt.encode(_claims(**{claim: value}), key, algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(JoseError):
        jose.verify_jwt(token, _keys(key), now=NOW)
    assert jose.numeric_date(2**63 - 1) and jose.numeric_date(-(2**63)) and not jose.numeric_date(value)


def test_an_unknown_critical_header_is_refused() -> None:
    """RFC 7515 §4.1.11: a recipient that does not understand a ``crit`` extension must reject the JWS."""
    key = _key("ES256")
    token = jose.sign_jwt(_claims(), key, alg="ES256", kid="k1", extra_headers={"crit": ["exp-ext"], "exp-ext": 1})
    with pytest.raises(JoseError, match="critical"):
        jose.verify_jwt(token, _keys(key), now=NOW)
    token = jose.sign_jwt(_claims(), key, alg="ES256", kid="k1", extra_headers={"crit": "exp-ext"})
    with pytest.raises(JoseError, match="critical"):
        jose.verify_jwt(token, _keys(key), now=NOW)


def test_the_key_is_chosen_by_kid_then_by_algorithm() -> None:
    k1, k2, rsa = _key("ES256"), _key("ES256"), _key("RS256")
    jwks = {"keys": [jose.public_jwk(k1, "k1"), jose.public_jwk(k2, "k2"), jose.public_jwk(rsa, "r1")]}
    keys = jose.parse_jwks(jwks)
    assert jose.verify_jwt(jose.sign_jwt(_claims(), k2, alg="ES256", kid="k2"), keys, now=NOW).key.kid == "k2"
    with pytest.raises(JoseError, match="no key matches"):
        jose.verify_jwt(jose.sign_jwt(_claims(), k2, alg="ES256", kid="k9"), keys, now=NOW)
    with pytest.raises(JoseError, match="signature"):  # k1's kid on a token k2 signed
        jose.verify_jwt(jose.sign_jwt(_claims(), k2, alg="ES256", kid="k1"), keys, now=NOW)
    with pytest.raises(JoseError, match="no key matches"):  # the key's algorithm, never the header's
        jose.verify_jwt(jwt.encode(_claims(), rsa, algorithm="PS256", headers={"kid": "r1"}), keys, now=NOW)
    # without a kid, every key of the token's algorithm is tried
    no_kid = jwt.encode(_claims(), k2, algorithm="ES256")
    assert jose.verify_jwt(no_kid, keys, now=NOW).key.kid == "k2"


def test_parse_jwks_keeps_only_public_signing_keys_of_allowed_algorithms() -> None:
    es, rsa = _key("ES256"), _key("RS256")
    private = jwt.algorithms.ECAlgorithm.to_jwk(es, as_dict=True)
    jwks = {"keys": [
        jose.public_jwk(es, "ok"),
        {**jose.public_jwk(rsa, "enc"), "use": "enc"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {**private, "kid": "private"},
        {"kty": "EC", "crv": "P-256", "x": "broken", "kid": "broken"},
        {**jose.public_jwk(rsa, "rs"), "alg": "HS256"},
        "not a key",
    ]}
    assert [k.kid for k in jose.parse_jwks(jwks)] == ["ok"]
    assert [k.kid for k in jose.parse_jwks({"keys": [jose.public_jwk(rsa, "rs")]}, allowed_algs=["ES256"])] == []
    for bad in ({}, {"keys": "x"}, []):
        with pytest.raises(JoseError):
            jose.parse_jwks(bad)  # type: ignore[arg-type]


def test_thumbprint_is_rfc_7638() -> None:
    """RFC 7638 §3.1's example key and thumbprint; optional members and member order do not count."""
    rfc = {"kty": "RSA", "e": "AQAB", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiF"
        "V4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9"
        "c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1"
        "jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert jose.jwk_thumbprint(rfc) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jose.jwk_thumbprint({"alg": "RS256", "kid": "2011-04-29", **dict(reversed(rfc.items()))}) == \
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    ec = jose.public_jwk(_key("ES256"), "k1")
    canonical = json.dumps({"crv": ec["crv"], "kty": "EC", "x": ec["x"], "y": ec["y"]}, separators=(",", ":"))
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")
    assert jose.jwk_thumbprint(ec) == expected
    okp = jose.public_jwk(_key("EdDSA"), "k1")
    assert jose.jwk_thumbprint(okp) == jose.jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": okp["x"]})
    with pytest.raises(JoseError):
        jose.jwk_thumbprint({"kty": "oct", "k": "c2VjcmV0"})


def test_private_keys_round_trip_through_pem_and_encryption() -> None:
    key = _key("ES256")
    assert jose.public_jwk(jose.key_from_pem(jose.key_to_pem(key)), "k") == jose.public_jwk(key, "k")
    blob = jose.encrypt_private_key(jose.key_to_pem(key), b"k" * 32, "kid-1")
    assert jose.public_jwk(jose.decrypt_private_key(blob, b"k" * 32, "kid-1"), "k") == jose.public_jwk(key, "k")
    with pytest.raises(Exception):  # noqa: B017 - another kid (associated data) cannot open it
        jose.decrypt_private_key(blob, b"k" * 32, "kid-2")
