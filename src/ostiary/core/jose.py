"""Sign and verify JWTs, and convert keys to and from JWK: the only module that imports the JOSE library.

Verification takes the algorithm from the key (and an allow-list), never from the token header; it
refuses ``none``, symmetric keys, and any ``crit`` extension it does not understand. Key-carrying
headers (``jku``, ``x5u``, ``jwk``, ``x5c``) are never followed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeGuard, cast

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from .._json import loads as _loads
from .._secrets import b64url, b64url_decode
from . import sealing

__all__ = [
    "ASYMMETRIC_ALGS",
    "JoseError",
    "PrivateKey",
    "PublicJwk",
    "PublicKey",
    "SigningAlg",
    "VerifiedJwt",
    "alg_for_key",
    "decode_unverified",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_private_key",
    "jwk_thumbprint",
    "key_from_pem",
    "key_to_pem",
    "parse_jwks",
    "public_jwk",
    "sign_jwt",
    "verify_jwt",
    "verify_with_embedded_jwk",
]

SigningAlg = Literal["ES256", "RS256", "EdDSA"]
ASYMMETRIC_ALGS: Final[frozenset[str]] = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
_UNDERSTOOD_CRIT: Final[frozenset[str]] = frozenset()


class JoseError(Exception):
    """A token or key could not be used. ``str()`` is safe to log; it never contains the token."""


@dataclass(frozen=True, slots=True)
class PublicJwk:
    """A verification key from a JWKS, with the one algorithm it may be used with."""

    kid: str | None
    alg: str
    key: PublicKey = field(repr=False)
    jwk: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    key: PublicJwk
    thumbprint: str | None = None  # RFC 7638, set by verify_with_embedded_jwk


def generate_private_key(alg: SigningAlg) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise JoseError(f"unsupported signing algorithm {alg!r}")


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise JoseError("unsupported private key type")
    return key


def alg_for_key(key: PublicKey | PrivateKey) -> str:
    """The JWS algorithm a key is used with (RS256 for RSA keys)."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "RS256"


def public_jwk(key: PrivateKey | PublicKey, kid: str, alg: str | None = None) -> dict[str, Any]:
    """The public JWK (RFC 7517) of a key, with ``kid``, ``alg`` and ``use: sig``."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                                         | ed25519.Ed25519PrivateKey) else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(pub, as_dict=True)
    elif isinstance(pub, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(pub, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(pub, as_dict=True)
    out: dict[str, Any] = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}
    out.update({"kid": kid, "alg": alg or alg_for_key(pub), "use": "sig"})
    return out


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    import hashlib

    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    kty = jwk.get("kty")
    if kty not in required:
        raise JoseError("unsupported key type")
    members = {k: jwk[k] for k in required[str(kty)]}
    data = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url(hashlib.sha256(data).digest())


def parse_jwks(jwks: Mapping[str, Any], allowed_algs: Iterable[str] = ASYMMETRIC_ALGS) -> list[PublicJwk]:
    """Parse a JWKS into verification keys. Symmetric (``oct``) keys and keys not for signing are skipped."""
    allowed = frozenset(allowed_algs) & ASYMMETRIC_ALGS
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise JoseError("a JWKS must be an object with a 'keys' array")
    out: list[PublicJwk] = []
    for raw in keys:
        if not isinstance(raw, Mapping) or raw.get("kty") not in ("EC", "RSA", "OKP"):
            continue
        if raw.get("use", "sig") != "sig":
            continue
        try:
            parsed = jwt.PyJWK(dict(raw))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        key = parsed.key
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            continue  # a private key in a public JWKS is not used
        alg = str(raw.get("alg") or alg_for_key(key))
        if alg not in allowed:
            continue
        kid = raw.get("kid")
        out.append(PublicJwk(kid=str(kid) if kid is not None else None, alg=alg, key=key, jwk=dict(raw)))
    return out


def _json_dumps(obj: Any, /) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_dumps: Callable[[Any], bytes] = _json_dumps
#: parses a JWT's claims (UTF-8 JSON, RFC 7519 §7.2); ``ValueError`` on anything else
loads_claims: Callable[[bytes], Any] = _loads
try:  # a faster encoder and parser when the server's dependencies are installed; the toolkits do without them
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads

    _dumps = _orjson_dumps
    # stricter than json.loads, never looser: UTF-8 only, no NaN or Infinity, integers within 64 bits
    loads_claims = _orjson_loads
except ImportError:  # pragma: no cover - exercised where orjson is absent
    pass

_HEADER_CACHE: dict[tuple[str, str, str], bytes] = {}
_HASHES: dict[str, hashes.HashAlgorithm] = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(),
                                             "ES512": hashes.SHA512(), "RS256": hashes.SHA256()}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
#: the ECDSA parameter objects, made once (immutable; making one per signature showed in profiles)
_ECDSA: dict[str, ec.ECDSA] = {alg: ec.ECDSA(_HASHES[alg]) for alg in _EC_SIZES}


def sign_jwt(claims: Mapping[str, Any], key: PrivateKey, *, alg: str, kid: str, typ: str = "JWT",
             extra_headers: Mapping[str, Any] | None = None) -> str:
    """Compact JWS (RFC 7515 §7.1) over ``claims``.

    This is the hottest code of the token endpoint, so it signs with ``cryptography`` directly (PyJWT's
    encoder re-serialises the constant header and converts signatures in pure Python: measured at about
    a third of the token endpoint's own CPU time). The header segment is cached per key.
    """
    if extra_headers:
        return jwt.encode(dict(claims), key, algorithm=alg, headers={"kid": kid, "typ": typ, **extra_headers})
    cache_key = (kid, alg, typ)
    header = _HEADER_CACHE.get(cache_key)
    if header is None:
        header = b64url(json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":")).encode()).encode()
        if len(_HEADER_CACHE) > 64:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[cache_key] = header
    payload = b64url(_dumps(claims)).encode()
    signing_input = header + b"." + payload
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s_ = decode_dss_signature(key.sign(signing_input, _ECDSA[alg]))
        size = _EC_SIZES[alg]
        sig = r.to_bytes(size, "big") + s_.to_bytes(size, "big")
    elif isinstance(key, rsa.RSAPrivateKey):
        if alg not in ("RS256",):
            return jwt.encode(dict(claims), key, algorithm=alg, headers={"kid": kid, "typ": typ})
        sig = key.sign(signing_input, padding.PKCS1v15(), _HASHES[alg])
    else:
        sig = key.sign(signing_input)
    return (signing_input + b"." + b64url(sig).encode()).decode("ascii")


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS *without* checking anything. Only for routing and explain."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
        raise JoseError("not a compact JWS")
    h, p, _ = token.split(".")
    try:
        header = _loads(b64url_decode(h))
        claims = _loads(b64url_decode(p))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JoseError("malformed JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("malformed JWT")
    return header, claims


def verify_jwt(
    token: str,
    keys: Sequence[PublicJwk],
    *,
    issuer: str | None = None,
    audience: str | Sequence[str] | None = None,
    typ: str | None = None,
    leeway: float = 0.0,
    now: float | None = None,
    require: Sequence[str] = ("exp",),
) -> VerifiedJwt:
    """Verify a compact JWS against ``keys`` and check the registered claims.

    The key is chosen by ``kid`` (or, with no ``kid``, the keys whose algorithm matches);
    the algorithm comes from the key. ``now`` overrides the clock (seconds since the epoch).
    """
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
        raise JoseError("not a compact JWS")
    try:  # only the header, to pick the key; PyJWT parses the whole token once below
        header = _loads(b64url_decode(token[: token.index(".")]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JoseError("malformed JWT header") from exc
    if not isinstance(header, dict):
        raise JoseError("malformed JWT header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS:
        raise JoseError("algorithm not allowed")
    crit = header.get("crit")
    # RFC 7515 §4.1.11: a non-empty array of header parameter names (strings); any other shape is refused
    # before it is used (an unhashable member must not escape as a TypeError)
    if crit is not None and (not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit)
                             or not set(crit) <= _UNDERSTOOD_CRIT):
        raise JoseError("unsupported critical header")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JoseError("kid is not a string")
    if typ is not None:
        htyp = header.get("typ")
        if not isinstance(htyp, str) or htyp.lower().removeprefix("application/") != typ.lower():
            raise JoseError("wrong token type")
    candidates = [k for k in keys if k.kid == kid] if kid is not None else [k for k in keys if k.alg == alg]
    candidates = [k for k in candidates if k.alg == alg]
    if not candidates:
        raise JoseError("no key matches the token's kid and algorithm")
    options: dict[str, Any] = {"require": list(require), "verify_aud": audience is not None,
                               "verify_iss": issuer is not None}
    last: Exception | None = None
    for key in candidates:
        try:
            claims = _decode(token, key, issuer, audience, leeway, options, now)
        except jwt.InvalidSignatureError as exc:
            last = exc
            continue
        except jwt.ExpiredSignatureError as exc:
            raise JoseError("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise JoseError("iat is in the future" if "iat" in str(exc) else "token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise JoseError("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise JoseError("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise JoseError(f"missing claim {exc.claim}") from exc
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
            # RecursionError: PyJWT parses the claims with json.loads, which raises it for a document nested
            # deeper than the recursion limit (only once the signature verified: a key holder's token)
            raise JoseError("invalid token") from exc
        return VerifiedJwt(header=header, claims=claims, key=key)
    raise JoseError("signature verification failed") from last


def numeric_date(value: object) -> TypeGuard[int | float]:
    """An RFC 7519 §2 NumericDate as JSON gives it: an int or float, finite (``NaN`` compares false with every
    time, so a ``NaN`` exp would never expire and a ``NaN`` iat would pass any window), not a bool, and an int
    within 64 bits (``json.loads`` reads any number of digits, and ``float()`` of a 400-digit int, which any
    arithmetic with a float time does, raises ``OverflowError``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return isinstance(value, float) and math.isfinite(value)


_INT64: Final = 2**63


def _decode(token: str, key: PublicJwk, issuer: str | None, audience: str | Sequence[str] | None,
            leeway: float, options: dict[str, Any], now: float | None) -> dict[str, Any]:
    if now is None:
        return jwt.decode(token, key.key, algorithms=[key.alg], issuer=issuer, audience=audience, leeway=leeway,
                          options=cast(Any, options))
    # PyJWT reads the system clock; shift the leeway-checked times by decoding without time checks
    # and applying them here with the injected clock.
    opts = dict(options, verify_exp=False, verify_nbf=False, verify_iat=False)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=[key.alg], issuer=issuer, audience=audience,
                                        options=cast(Any, opts))
    for name in options.get("require", ()):
        if name not in claims:
            raise jwt.MissingRequiredClaimError(name)
    exp = claims.get("exp")
    if exp is not None:
        if not numeric_date(exp):
            raise jwt.DecodeError("exp must be a number")
        if exp <= now - leeway:
            raise jwt.ExpiredSignatureError("expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        if not numeric_date(nbf):
            raise jwt.DecodeError("nbf must be a number")
        if nbf > now + leeway:
            raise jwt.ImmatureSignatureError("not yet valid")
    iat = claims.get("iat")
    if iat is not None:
        if not numeric_date(iat):
            raise jwt.DecodeError("iat must be a number")
        if iat > now + leeway:
            raise jwt.ImmatureSignatureError("iat is in the future")
    return claims


#: JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2)
_PRIVATE_MEMBERS: Final[frozenset[str]] = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def verify_with_embedded_jwk(token: str, *, typ: str, allowed_algs: Collection[str]) -> VerifiedJwt:
    """Verify a compact JWS signed by the public key in its own ``jwk`` header (RFC 9449 §4.3 DPoP proofs).

    The header's ``typ`` must be ``typ``; ``alg`` one of ``allowed_algs`` (asymmetric only) and of the key's
    type (an EC key's curve fixes it); the ``jwk`` a public EC, RSA or OKP key (a private member, or an
    ``oct`` key, is refused). Only the signature is checked here; the claims are the caller's. ``JoseError``.
    The result carries the key's RFC 7638 ``thumbprint``."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
        raise JoseError("not a compact JWS")
    segment = token[: token.index(".")]
    header = embedded_header(segment)
    if header.typ != typ.lower():
        raise JoseError(f"typ must be {typ}")
    alg = header.alg
    if alg not in allowed_algs:
        raise JoseError("algorithm not allowed")
    signing_input, _, signature = token.rpartition(".")
    try:
        _verify_signature(header.key.key, alg, signing_input.encode("ascii"), b64url_decode(signature))
        claims = loads_claims(b64url_decode(signing_input[len(segment) + 1:]))
    except InvalidSignature as exc:
        raise JoseError("signature verification failed") from exc
    except (ValueError, UnicodeError) as exc:
        raise JoseError("invalid token") from exc
    if not isinstance(claims, dict):
        raise JoseError("malformed JWT")
    return VerifiedJwt(header=header.header, claims=claims, key=header.key, thumbprint=header.thumbprint)


@dataclass(frozen=True, slots=True)
class EmbeddedHeader:
    """A JWS header carrying its own public key (``jwk``), checked: see :func:`embedded_header`."""

    header: Mapping[str, Any]
    typ: str  # lower-case
    alg: str
    key: PublicJwk
    thumbprint: str  # RFC 7638, of ``key``


def embedded_header(segment: str) -> EmbeddedHeader:
    """The first segment of a compact JWS, decoded and checked: an asymmetric ``alg`` that fits the public
    ``jwk`` (no private member, no ``oct`` key, no ``crit``), a string ``typ``. The caller checks ``typ`` and
    ``alg`` against what it accepts. Nothing here proves the key signed anything. ``JoseError``.

    Memoised by the segment itself: a client sends the same header with every proof, and decoding, checking
    and thumbprinting the key costs about as much as the rest of a proof's check bar the signature. Bounded
    (cleared when full); segments longer than 2 KiB (RSA keys above 8192 bits) are not kept."""
    found = _HEADERS.get(segment)
    if found is not None:
        return found
    try:
        header = _loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JoseError("malformed JWT header") from exc
    if not isinstance(header, dict):
        raise JoseError("malformed JWT header")
    htyp = header.get("typ")
    if not isinstance(htyp, str):
        raise JoseError("the header has no typ")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS:
        raise JoseError("algorithm not allowed")
    if "crit" in header:
        raise JoseError("unsupported critical header")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise JoseError("no jwk header")
    if _PRIVATE_MEMBERS & jwk.keys() or jwk.get("kty") not in ("EC", "RSA", "OKP"):
        raise JoseError("the jwk must be a public asymmetric key")
    members = tuple(jwk.get(k) for k in _JWK_MEMBERS)
    if not all(isinstance(v, str | None) for v in members):
        raise JoseError("malformed jwk")
    key = _embedded_key(members, alg)
    out = EmbeddedHeader(header=MappingProxyType(header), typ=htyp.lower(), alg=alg,
                         key=PublicJwk(kid=None, alg=alg, key=key, jwk=MappingProxyType(jwk)),
                         thumbprint=jwk_thumbprint(jwk))
    if len(segment) <= 2048:
        if len(_HEADERS) >= 4096:
            _HEADERS.clear()
        _HEADERS[segment] = out
    return out


_HEADERS: dict[str, EmbeddedHeader] = {}


_JWK_MEMBERS: Final = ("kty", "crv", "x", "y", "n", "e")
#: public keys of recent proofs (a client signs every proof with the same key): parsing and checking a key
#: costs more than verifying a signature with it. Bounded: cleared when full.
_EMBEDDED: dict[tuple[tuple[str | None, ...], str], PublicKey] = {}
_PSS_HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384(),
                                                "512": hashes.SHA512()}


def _embedded_key(members: tuple[str | None, ...], alg: str) -> PublicKey:
    found = _EMBEDDED.get((members, alg))
    if found is not None:
        return found
    try:
        key = jwt.PyJWK({k: v for k, v in zip(_JWK_MEMBERS, members, strict=True) if v is not None}).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise JoseError("malformed jwk") from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        fits = key.curve.name in ("secp256r1", "secp384r1", "secp521r1") and alg_for_key(key) == alg
    elif isinstance(key, rsa.RSAPublicKey):
        fits = alg[:2] in ("RS", "PS") and key.key_size >= 2048
    else:
        fits = isinstance(key, ed25519.Ed25519PublicKey) and alg == "EdDSA"
    if not fits:
        raise JoseError("the algorithm does not fit the key")
    if len(_EMBEDDED) >= 4096:
        _EMBEDDED.clear()
    _EMBEDDED[(members, alg)] = key
    return cast(PublicKey, key)


def _verify_signature(key: PublicKey, alg: str, signing_input: bytes, signature: bytes) -> None:
    """RFC 7518 §3: raises ``InvalidSignature``."""
    digest = _PSS_HASHES.get(alg[2:])
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = _EC_SIZES[alg]
        if len(signature) != 2 * size or digest is None:
            raise InvalidSignature
        der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
        key.verify(der, signing_input, _ECDSA[alg])
    elif isinstance(key, rsa.RSAPublicKey):
        if digest is None:
            raise InvalidSignature
        pad: padding.AsymmetricPadding = (padding.PKCS1v15() if alg.startswith("RS") else
                                          padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size))
        key.verify(signature, signing_input, pad, digest)
    else:
        key.verify(signature, signing_input)


def encrypt_private_key(pem: bytes, kek: bytes, kid: str) -> bytes:
    """Encrypt a private key at rest with AES-256-GCM under the key-encryption key; ``kid`` is bound as AAD."""
    return sealing.seal(pem, kek, kid, version=b"v1")


def decrypt_private_key(blob: bytes, kek: bytes, kid: str) -> PrivateKey:
    try:
        pem = sealing.unseal(blob, kek, kid, version=b"v1")
    except sealing.SealError as exc:
        if blob[:2] != b"v1":
            raise JoseError("unknown key encryption format") from exc
        raise JoseError("cannot decrypt signing key: wrong OSTIARY_SECRET_KEY?") from exc
    return key_from_pem(pem)
