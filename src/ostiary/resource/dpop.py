"""DPoP at the API (RFC 9449 §7): ``Authorization: DPoP <token>`` with a proof of possession of the token's key.

A request with the ``DPoP`` scheme must carry exactly one ``DPoP`` header: a compact JWS (refused unread when longer
than ``max_proof_length``) with ``typ: dpop+jwt``, an asymmetric algorithm from ``algorithms`` (never ``none`` or
HMAC), signed by the *public* key in its ``jwk`` header (a private or symmetric key, or an RSA key under 2048 bits,
is refused), ``htm`` = the request's method, ``htu`` = its URL (compared without query and fragment, scheme and host
case-insensitive, §4.3), ``iat`` within ``max_age`` seconds (plus ``leeway`` for clock skew), ``ath`` = base64url
SHA-256 of the access token (§4.2), a ``jti`` never seen before within the window (replay cache: in memory, or in
Redis so that every process of a service shares it), and — when the API asks for them — a ``nonce`` it issued (§9).
The key's RFC 7638 thumbprint must be the token's ``cnf.jkt`` (§6.1). A token bound that way is refused when
presented as ``Bearer`` (a stolen one cannot be downgraded).

:class:`DpopPolicy` holds these settings; give it to :class:`~ostiary.resource.TokenVerifier` (``dpop=``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import quote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .._json import loads as json_loads
from .._secrets import b64url, b64url_decode, constant_time_equals, sha256_b64url
from ..core.jose import ASYMMETRIC_ALGS, JoseError, PublicJwk, jwk_thumbprint, numeric_date, parse_jwks
from .errors import InvalidDpopProof, UseDpopNonce

__all__ = ["DEFAULT_DPOP_ALGORITHMS", "DpopNonces", "DpopPolicy", "DpopRequest", "MemoryReplayCache",
           "RedisReplayCache", "ReplayCache", "normalize_htu", "raw_request_path"]

log = logging.getLogger("ostiary.resource")

#: The algorithms accepted by default: every asymmetric JWS algorithm the JOSE wrapper verifies.
DEFAULT_DPOP_ALGORITHMS: Final = ("ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256")
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class DpopRequest:
    """What the verifier needs to know about the HTTP request a token came with.

    ``scheme``: the ``Authorization`` scheme (``Bearer`` or ``DPoP``); ``proofs``: every ``DPoP`` header value;
    ``method`` and ``url``: the request as the client addressed it (behind a proxy, the public URL)."""

    scheme: str
    proofs: tuple[str, ...] = ()
    method: str = "GET"
    url: str = ""

    @property
    def is_dpop(self) -> bool:
        return self.scheme.lower() == "dpop"


_PERCENT: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent_normalized(path: str) -> str:
    """RFC 3986 §6.2.2.1-2: percent-encodings in upper case, and those of unreserved characters decoded."""
    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()
    return _PERCENT.sub(one, path)


def normalize_htu(url: str) -> str:
    """RFC 9449 §4.3 / RFC 3986 §6.2: scheme and host lower-cased, default port dropped, empty path ``/``,
    percent-encodings normalised (§6.2.2.2: upper-case hex digits, unreserved characters decoded), no query and
    no fragment."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{_percent_normalized(parts.path) or '/'}"


def raw_request_path(raw: bytes | str | None, decoded: str) -> str:
    """The path of the request as the client sent it (percent-encoded, without the query): the server's raw
    path (ASGI ``raw_path``, WSGI ``RAW_URI`` / ``REQUEST_URI``) when it gives one, else the decoded path
    encoded again. ``htu`` names the URL the client addressed (RFC 9449 §4.3), and a decoded path differs
    from it wherever the client percent-encoded a character (``/files/a%20b``)."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if raw and raw.startswith("/"):
        return raw.split("?", 1)[0].split("#", 1)[0]
    return quote(decoded, safe="/!$&'()*+,;=:@~")


def _same_htu(htu: str, url: str) -> bool:
    """Whether a proof's ``htu`` names ``url``; never, when either is not a URL ``urlsplit`` can read (an
    unclosed IPv6 literal in the claim, or in the request's ``Host`` header)."""
    try:
        return normalize_htu(htu) == normalize_htu(url)
    except ValueError:
        return False


# -- replay caches ---------------------------------------------------------------------------------


class ReplayCache(Protocol):
    """Remembers proof identifiers. ``add`` is atomic: True the first time a key is seen within ``ttl``."""

    def add(self, key: str, ttl: float) -> bool: ...

    async def aadd(self, key: str, ttl: float) -> bool: ...


class MemoryReplayCache:
    """One process's replay cache: a dict of key → expiry, capped at ``max_entries`` (expired entries go
    first; beyond that the oldest). Enough for a single process; several processes need :class:`RedisReplayCache`."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def contains(self, key: str) -> bool:
        with self._lock:
            expiry = self._data.get(key)
            return expiry is not None and expiry > time.monotonic()

    def add(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            expiry = self._data.get(key)
            if expiry is not None and expiry > now:
                return False
            self._data[key] = now + ttl
            self._data.move_to_end(key)
            if len(self._data) > self._max:
                for old in [k for k, e in self._data.items() if e <= now]:
                    del self._data[old]
                while len(self._data) > self._max:
                    self._data.popitem(last=False)
            return True

    async def aadd(self, key: str, ttl: float) -> bool:
        return self.add(key, ttl)


class RedisReplayCache:
    """A replay cache in Redis (``SET key NX PX ttl``), shared by every process of a service that points at the
    same Redis and ``prefix``. Needs the ``redis`` package (``pip install 'ostiary[redis]'``).

    Fail safe: when Redis cannot be reached the check goes on in a per-process :class:`MemoryReplayCache`
    (a replay to the *same* process is still caught) and Redis is tried again after ``retry_after`` seconds;
    a proof recorded in memory during an outage is still refused once Redis is back.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "ostiary:dpop:jti:",
                 timeout: float = 0.5, retry_after: float = 5.0, fallback: MemoryReplayCache | None = None) -> None:
        import redis  # noqa: F401  (fail at construction when the optional dependency is missing)

        self.url = url
        self.prefix = prefix
        self._timeout = timeout
        self._retry_after = retry_after
        self.fallback = fallback or MemoryReplayCache()
        self._down_until = 0.0
        self._client: Any = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisReplayCache(prefix={self.prefix!r})"

    def _sync(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(self.url, socket_timeout=self._timeout,
                                                    socket_connect_timeout=self._timeout)
            return self._client

    def _async(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(self.url, socket_timeout=self._timeout,
                                                  socket_connect_timeout=self._timeout)
            self._aclients[loop] = client
        return client

    def _down(self, exc: Exception) -> None:
        log.warning("DPoP replay cache: Redis unavailable (%s); checking in this process's memory for %.0f s",
                    type(exc).__name__, self._retry_after)
        self._down_until = time.monotonic() + self._retry_after

    def add(self, key: str, ttl: float) -> bool:
        import redis

        if time.monotonic() < self._down_until:
            return self.fallback.add(key, ttl)
        try:
            fresh = bool(self._sync().set(self.prefix + key, b"1", nx=True, px=max(1, int(ttl * 1000))))
        except (redis.RedisError, OSError) as exc:
            self._down(exc)
            return self.fallback.add(key, ttl)
        return fresh and not self.fallback.contains(key)

    async def aadd(self, key: str, ttl: float) -> bool:
        import redis

        if time.monotonic() < self._down_until:
            return self.fallback.add(key, ttl)
        try:
            fresh = bool(await self._async().set(self.prefix + key, b"1", nx=True, px=max(1, int(ttl * 1000))))
        except (redis.RedisError, OSError) as exc:
            self._down(exc)
            return self.fallback.add(key, ttl)
        return fresh and not self.fallback.contains(key)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# -- nonces (RFC 9449 §9) --------------------------------------------------------------------------


class DpopNonces:
    """Stateless resource-server nonces: ``timestamp ‖ HMAC(secret, timestamp)``, valid for ``lifetime``
    seconds. Give every process of a service the same ``secret`` (bytes or str); without one each process makes
    its own and a nonce from one process is refused (and replaced) by another."""

    def __init__(self, secret: bytes | str | None = None, *, lifetime: float = 300.0) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        self._secret = raw if raw else secrets.token_bytes(32)
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"DpopNonces(lifetime={self.lifetime!r})"

    def _mac(self, stamp: bytes) -> bytes:
        return hmac.new(self._secret, b"ostiary-dpop-nonce|" + stamp, hashlib.sha256).digest()[:16]

    def issue(self, now: float) -> str:
        stamp = int(now).to_bytes(8, "big")
        return b64url(stamp + self._mac(stamp))

    def valid(self, nonce: object, now: float) -> bool:
        if not isinstance(nonce, str) or len(nonce) != 32:
            return False
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return False
        if len(raw) != 24 or not hmac.compare_digest(raw[8:], self._mac(raw[:8])):
            return False
        issued = int.from_bytes(raw[:8], "big")
        return issued - 5 <= now < issued + self.lifetime


# -- the policy and the proof check -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    jkt: str
    replay_key: str = field(repr=False)


@dataclass(slots=True)
class DpopPolicy:
    """How this API checks DPoP proofs.

    ``algorithms``: accepted proof algorithms (asymmetric only; advertised in challenges and metadata).
    ``required``: refuse tokens presented as ``Bearer`` altogether (RFC 9728 ``dpop_bound_access_tokens_required``).
    ``max_age``: how old a proof's ``iat`` may be; ``leeway``: clock skew allowed either way.
    ``replay_cache``: where used ``jti`` values are kept (default: this process's memory; use
    :class:`RedisReplayCache` for a service with several processes). ``nonces``: ask for resource-server nonces.
    ``external_url``: this API's public base URL (``https://api.example.com``) when it runs behind a proxy that
    changes scheme, host or port; the adapters then build ``htu`` from it and the request path.
    """

    algorithms: Sequence[str] = DEFAULT_DPOP_ALGORITHMS
    required: bool = False
    max_age: float = 60.0
    leeway: float = 5.0
    replay_cache: ReplayCache = field(default_factory=MemoryReplayCache)
    nonces: DpopNonces | None = None
    external_url: str | None = None
    max_proof_length: int = 8192
    _keys: dict[str, tuple[PublicJwk, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        algs = tuple(self.algorithms)
        refused = [a for a in algs if a not in ASYMMETRIC_ALGS]
        if refused or not algs:
            raise ValueError(f"DPoP algorithms must be asymmetric JWS algorithms, not {refused or 'none'}")
        self.algorithms = algs
        if self.external_url is not None:
            parts = urlsplit(self.external_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError(f"external_url must be http(s)://host[:port][/prefix]: {self.external_url!r}")

    @property
    def ttl(self) -> float:
        """How long a ``jti`` is remembered: as long as a proof with it could pass the ``iat`` check."""
        return self.max_age + 2 * self.leeway

    def request_url(self, scheme: str, host: str, path: str) -> str:
        """The URL a client addressed: from ``external_url`` when set, else from the request itself. ``path`` as
        the client sent it, percent-encoded (see :func:`raw_request_path`)."""
        if self.external_url is not None:
            return self.external_url.rstrip("/") + path
        return f"{scheme}://{host}{path}"

    def check(self, request: DpopRequest, access_token: str, now: float) -> VerifiedProof:
        """Check the request's single proof against the request and the access token (not the replay cache)."""
        if len(request.proofs) != 1:
            raise InvalidDpopProof("no DPoP proof" if not request.proofs else "more than one DPoP header")
        proof = request.proofs[0].strip()
        if len(proof) > self.max_proof_length:  # before any parsing: a huge header costs nothing more
            raise InvalidDpopProof("DPoP proof too large")
        if not proof.isascii() or proof.count(".") != 2:
            raise InvalidDpopProof("DPoP proof is not a compact JWS")
        key, jkt = self._key(proof.partition(".")[0])
        claims = _verified_claims(proof, key)
        self._check_claims(claims, request, access_token, now)
        replay_key = b64url(hashlib.sha256(f"{jkt}|{claims['jti']}".encode()).digest())
        return VerifiedProof(jkt=jkt, replay_key=replay_key)

    def _key(self, segment: str) -> tuple[PublicJwk, str]:
        """The verification key and thumbprint named by a proof's header segment (checked: typ, alg, a public
        asymmetric jwk). A client sends the same header with every proof, so accepted headers are memoised."""
        cached = self._keys.get(segment)
        if cached is not None:
            return cached
        header = _header(segment)
        if header.get("typ") != "dpop+jwt":
            raise InvalidDpopProof("DPoP proof typ is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidDpopProof("DPoP proof algorithm not allowed")
        jwk = header.get("jwk")
        if not isinstance(jwk, Mapping) or jwk.get("kty") not in ("EC", "RSA", "OKP"):
            raise InvalidDpopProof("DPoP proof has no public jwk")
        if _PRIVATE_MEMBERS & set(jwk):
            raise InvalidDpopProof("DPoP proof jwk holds a private key")
        if "crit" in header:  # RFC 7515 §4.1.11: no extension is understood here
            raise InvalidDpopProof("DPoP proof has a critical header")
        try:
            public = {k: v for k, v in jwk.items() if k not in ("alg", "use", "key_ops", "kid")}
            keys = parse_jwks({"keys": [{**public, "alg": alg}]}, allowed_algs=(alg,))
            if len(keys) != 1:
                raise InvalidDpopProof("DPoP proof jwk is unusable with its algorithm")
            if not _fits(alg, keys[0].key):
                raise InvalidDpopProof("DPoP proof key does not fit its algorithm (or RSA under 2048 bits)")
            kid = header.get("kid")
            key = PublicJwk(kid=kid if isinstance(kid, str) else None, alg=alg, key=keys[0].key, jwk=public)
            jkt = jwk_thumbprint(public)
        except JoseError as exc:
            raise InvalidDpopProof(f"DPoP proof refused: {exc}") from None
        except (TypeError, ValueError, KeyError):
            raise InvalidDpopProof("malformed DPoP proof") from None
        if len(self._keys) >= 4096:
            self._keys.clear()
        self._keys[segment] = (key, jkt)
        return key, jkt

    def _check_claims(self, claims: Mapping[str, Any], request: DpopRequest, access_token: str, now: float) -> None:
        htm, htu, iat, jti = claims.get("htm"), claims.get("htu"), claims.get("iat"), claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 512:
            raise InvalidDpopProof("DPoP proof jti missing or too long")
        if htm != request.method.upper():
            raise InvalidDpopProof("DPoP proof htm does not match the request method")
        if not isinstance(htu, str) or not _same_htu(htu, request.url):
            raise InvalidDpopProof("DPoP proof htu does not match the request URL")
        if not numeric_date(iat):
            raise InvalidDpopProof("DPoP proof iat is not a number")
        if iat < now - self.max_age - self.leeway or iat > now + self.leeway:
            raise InvalidDpopProof("DPoP proof iat outside the accepted window")
        ath = claims.get("ath")
        if not isinstance(ath, str) or not constant_time_equals(ath, sha256_b64url(access_token)):
            raise InvalidDpopProof("DPoP proof ath does not match the access token")
        if self.nonces is not None and not self.nonces.valid(claims.get("nonce"), now):
            raise UseDpopNonce(self.nonces.issue(now))


_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {"256": hashes.SHA256, "384": hashes.SHA384,
                                                          "512": hashes.SHA512}
_CURVES: Final = {"ES256": ("secp256r1", 32), "ES384": ("secp384r1", 48), "ES512": ("secp521r1", 66)}


def _fits(alg: str, key: Any) -> bool:
    """Whether ``key`` is of the family (and EC curve) ``alg`` names; RSA keys of at least 2048 bits."""
    if alg in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES[alg][0]
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return alg[:2] in ("RS", "PS") and isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


def _verified_claims(proof: str, key: PublicJwk) -> dict[str, Any]:
    """Check the proof's signature with ``key`` (its algorithm fixed by the accepted header) and return its claims.

    Straight with ``cryptography`` rather than through PyJWT: a proof is verified on every request (no cache can
    help, each is new), and PyJWT's segment checks cost as much again as the signature itself."""
    head, payload, sig = proof.split(".")
    data = f"{head}.{payload}".encode("ascii")
    alg, public = key.alg, key.key
    try:
        signature = b64url_decode(sig)
        if alg in _CURVES:
            size = _CURVES[alg][1]
            if len(signature) != 2 * size or not isinstance(public, ec.EllipticCurvePublicKey):
                raise InvalidDpopProof("DPoP proof signature has the wrong length")
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            public.verify(der, data, ec.ECDSA(_HASHES[alg[2:]]()))
        elif alg == "EdDSA" and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, data)
        elif alg[:2] == "RS" and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), _HASHES[alg[2:]]())
        elif alg[:2] == "PS" and isinstance(public, rsa.RSAPublicKey):
            digest = _HASHES[alg[2:]]()
            public.verify(signature, data, padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
                          digest)
        else:
            raise InvalidDpopProof("DPoP proof algorithm and key do not match")
        claims = json_loads(b64url_decode(payload))
    except InvalidSignature:
        raise InvalidDpopProof("DPoP proof signature verification failed") from None
    except (ValueError, UnicodeDecodeError, KeyError):
        raise InvalidDpopProof("malformed DPoP proof") from None
    if not isinstance(claims, dict):
        raise InvalidDpopProof("DPoP proof claims are not a JSON object")
    return claims


def _header(segment: str) -> dict[str, Any]:
    try:
        header = json_loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError):
        raise InvalidDpopProof("DPoP proof header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidDpopProof("DPoP proof header is not a JSON object")
    return header


def bound_jkt(claims: Mapping[str, Any]) -> str | None:
    """The ``cnf.jkt`` of a token (RFC 9449 §6.1), or None for a token not bound to a DPoP key. Fail safe: a
    ``jkt`` member that is not a string binds the token to no key at all (``""``, which no proof's thumbprint
    equals), rather than making it an unbound token usable as ``Bearer``."""
    cnf = claims.get("cnf")
    if not isinstance(cnf, Mapping) or "jkt" not in cnf:
        return None
    jkt = cnf["jkt"]
    return jkt if isinstance(jkt, str) else ""
