"""DPoP (RFC 9449): checking a proof, the replay cache's Protocol, and stateless server nonces.

A DPoP proof is a JWT the client signs with a key it holds, carrying that key's public half in its header
(``jwk``). Checked here, in this order (RFC 9449 §4.3), cheapest first:

1. exactly one ``DPoP`` header (the web layer joins repeated headers with ``,``, which no JWT contains), at most
   :data:`MAX_PROOF_BYTES` long (counted before anything is parsed: a huge header costs nothing);
2. a compact JWS with ``typ: dpop+jwt``, ``alg`` from the allow-list (asymmetric only), signed by the public key
   in ``jwk`` (a private or symmetric key is refused) — ``core.jose.verify_with_embedded_jwk``;
3. ``htm`` is the request's method, ``htu`` its URL without query and fragment (scheme and host compared
   case-insensitively, default ports ignored);
4. ``iat`` within ± ``iat_window`` of now (the injected clock);
5. the server nonce when one is required (§8: ``use_dpop_nonce`` with a fresh one in ``DPoP-Nonce``);
6. ``ath`` = base64url(SHA-256(access token)) when the proof accompanies an access token (§4.3 item 11);
7. ``jti`` seen for the first time (the replay cache keeps ``sha256(jkt|jti)`` until the window closes).

Step 7 may have been done before the others: :meth:`DPoPVerifier.replay_key` reads the key from the proof without
verifying it, so the web layer records it in the same Redis round trip as the rate limits, and passes the
outcome to :meth:`DPoPVerifier.verify` as ``first_use``. Recording an unverified proof's id costs an attacker
nothing it could use: the key includes the jwk's thumbprint and the client's random ``jti``, which only someone
who saw the proof knows (and could then replay it anyway).

The token is then bound to the key by its RFC 7638 thumbprint, ``cnf: {"jkt": …}`` (§6).

Nonces (§8) are stateless: ``base64url(slot ‖ HMAC(key, slot)[:16])`` where ``slot`` is the current period of
``nonce_lifetime`` seconds; a nonce of the current or the previous slot is accepted, so every worker and node
holding the server's secret accepts every other's nonces without sharing state.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Protocol
from urllib.parse import urlsplit

from .._clock import Clock
from .._secrets import b64url, b64url_decode, constant_time_equals
from .errors import OAuthError, safe_description
from .jose import JoseError, embedded_header, jwk_thumbprint, loads_claims, numeric_date, verify_with_embedded_jwk

__all__ = [
    "CNF_JKT",
    "DPOP_ALGS",
    "MAX_PROOF_BYTES",
    "DPoPProof",
    "DPoPReplayCache",
    "DPoPVerifier",
    "InvalidDpopProof",
    "UseDpopNonce",
    "access_token_hash",
    "normalized_htu",
    "resource_challenge",
]

#: the confirmation member of a DPoP-bound token (RFC 9449 §6.1)
CNF_JKT: Final = "jkt"
#: RFC 9449 §5.1 ``dpop_signing_alg_values_supported``: asymmetric algorithms only (§4.2)
DPOP_ALGS: Final[tuple[str, ...]] = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384",
                                     "RS512", "EdDSA")
#: a proof with an RSA-4096 key is about 2.2 KB; anything longer is refused before it is parsed
MAX_PROOF_BYTES: Final = 4096
_MAX_JTI = 256
_NONCE_TAG = 16


class InvalidDpopProof(OAuthError):
    """RFC 9449 §5 / §7.1 ``invalid_dpop_proof`` (400 at the token endpoint; resources answer 401)."""

    error = "invalid_dpop_proof"


class UseDpopNonce(OAuthError):
    """RFC 9449 §8 ``use_dpop_nonce``: retry with the nonce in the ``DPoP-Nonce`` header."""

    error = "use_dpop_nonce"


class DPoPReplayCache(Protocol):
    """Proof ids already used (RFC 9449 §11.1): shared by every process when Redis is configured."""

    async def seen_first(self, key: str, until: float) -> bool:
        """Record ``key`` until ``until`` (seconds since the epoch): True when it was not recorded before (this
        caller is the first), False for a replay. Atomic: of concurrent callers with one key, one gets True."""
        ...


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A proof that passed every check: the key's thumbprint (``cnf.jkt``) and the proof's own claims."""

    jkt: str
    jti: str = field(repr=False)
    iat: float
    htm: str
    htu: str


def access_token_hash(access_token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url of the SHA-256 of the ASCII access token."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


@lru_cache(maxsize=256)
def normalized_htu(url: str) -> str | None:
    """RFC 9449 §4.3 item 9: the URI without query and fragment, with RFC 3986 §6.2.2/§6.2.3 normalisation
    (scheme and host lowercase, default port dropped, empty path as ``/``). None when it is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != (443 if scheme == "https" else 80):
        host += f":{port}"
    return f"{scheme}://{host}{parts.path or '/'}"


def resource_challenge(algs: Iterable[str], error: str | None = None, description: str | None = None) -> str:
    """RFC 9449 §7.1 ``WWW-Authenticate: DPoP`` challenge of a protected resource."""
    out = "DPoP"
    params = []
    if error:
        params.append(f'error="{error}"')
    if description:
        # RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E only (a description may name an RFC section, "§")
        params.append(f'error_description="{safe_description(description[:200])}"')
    params.append('algs="' + " ".join(algs) + '"')
    return out + " " + ", ".join(params)


class DPoPVerifier:
    """Checks proofs (see the module's docstring). One per process; ``replay`` is the shared cache."""

    def __init__(self, replay: DPoPReplayCache, clock: Clock, nonce_key: bytes, *,
                 algs: Iterable[str] = DPOP_ALGS, iat_window: float = 60.0, nonce_lifetime: float = 300.0,
                 max_bytes: int = MAX_PROOF_BYTES) -> None:
        self.replay = replay
        self.clock = clock
        self._nonce_key = nonce_key
        self.algs = tuple(a for a in algs if a in DPOP_ALGS)
        self.iat_window = iat_window
        self.nonce_lifetime = nonce_lifetime
        self.max_bytes = max_bytes

    # --- nonces (§8) ---------------------------------------------------------------------------------------

    def _tag(self, slot: int) -> bytes:
        return hmac.new(self._nonce_key, b"dpop-nonce:" + struct.pack(">Q", slot), hashlib.sha256).digest()[
            :_NONCE_TAG]

    def new_nonce(self) -> str:
        """The nonce of the current period: every process with the same secret makes and accepts the same one."""
        slot = int(self.clock.now() // self.nonce_lifetime)
        return b64url(struct.pack(">Q", slot) + self._tag(slot))

    def nonce_valid(self, nonce: object) -> bool:
        """A nonce of this period or the previous one (so a nonce lives between one and two periods)."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return False
        if len(raw) != 8 + _NONCE_TAG:
            return False
        slot = struct.unpack(">Q", raw[:8])[0]
        current = int(self.clock.now() // self.nonce_lifetime)
        return slot in (current, current - 1) and hmac.compare_digest(raw[8:], self._tag(slot))

    # --- proofs --------------------------------------------------------------------------------------------

    @property
    def replay_window(self) -> float:
        """How long a proof id recorded by :meth:`replay_key`'s caller must be kept: any ``iat`` :meth:`verify`
        accepts is within ``iat_window`` of now, and the id must outlive it by the window again."""
        return 2 * self.iat_window + 1

    def replay_key(self, proof: str | None) -> str | None:
        """The key :meth:`verify` checks the proof's ``jti`` under, read **without verifying anything**, so it can
        be recorded early (see the module's docstring); None when the proof cannot be read (``verify`` will
        refuse it and say why)."""
        if proof is None or len(proof) > self.max_bytes or "," in proof:
            return None
        parts = proof.strip().split(".")
        if len(parts) != 3:
            return None
        try:
            jkt = embedded_header(parts[0]).thumbprint
            claims = loads_claims(b64url_decode(parts[1]))
        except (JoseError, ValueError, UnicodeError):
            return None
        jti = claims.get("jti") if isinstance(claims, dict) else None
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
            return None
        return _replay_key(jkt, jti)

    async def verify(self, proof: str | None, *, method: str, url: str, access_token: str | None = None,
                     require_nonce: bool = False, first_use: tuple[str, bool] | None = None) -> DPoPProof:
        """The checked proof, or ``InvalidDpopProof`` / ``UseDpopNonce`` (with ``DPoP-Nonce``). ``proof`` is the
        ``DPoP`` header as the web layer passes it (repeated headers joined with commas). ``first_use``: the
        replay cache's answer for :meth:`replay_key`'s key when the caller already recorded it (True: first)."""
        if proof is None or not proof.strip():
            raise InvalidDpopProof("a DPoP proof is required (RFC 9449): send it in the DPoP header")
        if len(proof) > self.max_bytes:
            raise InvalidDpopProof(f"the DPoP proof is longer than {self.max_bytes} bytes")
        if "," in proof:
            raise InvalidDpopProof("send exactly one DPoP header (RFC 9449 §4.3)")
        try:
            verified = verify_with_embedded_jwk(proof.strip(), typ="dpop+jwt", allowed_algs=self.algs)
            jkt = verified.thumbprint or jwk_thumbprint(verified.key.jwk)
        except JoseError as exc:
            raise InvalidDpopProof(f"the DPoP proof is invalid: {exc}") from exc
        claims = verified.claims
        if claims.get("htm") != method:
            raise InvalidDpopProof("the DPoP proof's htm is not this request's method")
        htu = claims.get("htu")
        expected = normalized_htu(url)
        if not isinstance(htu, str) or expected is None or normalized_htu(htu) != expected:
            raise InvalidDpopProof("the DPoP proof's htu is not this endpoint's URL")
        iat = claims.get("iat")
        if not numeric_date(iat):
            raise InvalidDpopProof("the DPoP proof has no iat")
        now = self.clock.now()
        if abs(now - iat) > self.iat_window:
            raise InvalidDpopProof("the DPoP proof's iat is too far from the server's time")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
            raise InvalidDpopProof("the DPoP proof has no jti")
        if require_nonce and not self.nonce_valid(claims.get("nonce")):
            raise UseDpopNonce("the authorization server requires a DPoP nonce: retry with the one in the "
                               "DPoP-Nonce header", headers={"DPoP-Nonce": self.new_nonce()})
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str) or not constant_time_equals(ath, access_token_hash(access_token)):
                raise InvalidDpopProof("the DPoP proof's ath does not match the access token")
        key = _replay_key(jkt, jti)
        if first_use is not None and first_use[0] == key:
            first = first_use[1]
        else:
            first = await self.replay.seen_first(key, max(now, float(iat)) + self.iat_window + 1)
        if not first:
            raise InvalidDpopProof("the DPoP proof was already used (its jti is single use)")
        return DPoPProof(jkt=jkt, jti=jti, iat=float(iat), htm=method, htu=htu)


def _replay_key(jkt: str, jti: str) -> str:
    return hashlib.sha256(f"{jkt}|{jti}".encode("utf-8", "surrogatepass")).hexdigest()
