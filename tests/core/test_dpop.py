"""RFC 9449 proof checks in ``core/dpop.py`` with the injected clock: the iat window, nonces across time slots and
secrets, htu normalisation, the size cap, and the replay key (per key and jti)."""

from __future__ import annotations

import json

import pytest

from ostiary._clock import FixedClock
from ostiary._secrets import b64url_decode
from ostiary.core.dpop import DPoPVerifier, InvalidDpopProof, UseDpopNonce, access_token_hash, normalized_htu
from ostiary.store.memory_dpop import MemoryDPoPReplayCache

from ..web._dpop import DPoPKey, b64url

URL = "https://as.example.com/token"


def _verifier(clock: FixedClock, secret: bytes = b"s" * 32, **kw: object) -> DPoPVerifier:
    return DPoPVerifier(MemoryDPoPReplayCache(clock=clock.now), clock, secret, **kw)  # type: ignore[arg-type]


async def test_iat_window_uses_the_injected_clock() -> None:
    clock = FixedClock()
    v, key = _verifier(clock, iat_window=60), DPoPKey()
    now = int(clock.now())
    assert (await v.verify(key.proof(URL, iat=now - 60), method="POST", url=URL)).jkt == key.jkt
    assert await v.verify(key.proof(URL, iat=now + 60), method="POST", url=URL)
    for iat in (now - 61, now + 61):
        with pytest.raises(InvalidDpopProof, match="iat"):
            await v.verify(key.proof(URL, iat=iat), method="POST", url=URL)


@pytest.mark.parametrize("lenient_json", [False, True])
async def test_a_nan_iat_is_refused(lenient_json: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``NaN`` compares false with every bound, so a proof whose iat is NaN would pass any window and never go
    stale (RFC 9449 §11.1). The server's JSON parser refuses the literal; the check refuses it as well, where
    claims are parsed by ``json.loads`` (which reads NaN)."""
    if lenient_json:
        monkeypatch.setattr("ostiary.core.jose.loads_claims", json.loads)
    clock = FixedClock(1_700_000_000.0)
    v, key = _verifier(clock, iat_window=60), DPoPKey()
    proof = key.proof(URL, iat=float("nan"))
    assert "NaN" in json.dumps(json.loads(b64url_decode(proof.split(".")[1])), allow_nan=True)
    with pytest.raises(InvalidDpopProof, match="iat" if lenient_json else "invalid"):
        await v.verify(proof, method="POST", url=URL)


@pytest.mark.parametrize("lenient_json", [False, True])
async def test_an_iat_beyond_64_bits_is_refused(lenient_json: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``json.loads`` reads a 400-digit iat, and ``abs(now - iat)`` then raises OverflowError (a 500, before)."""
    if lenient_json:
        monkeypatch.setattr("ostiary.core.jose.loads_claims", json.loads)
    v, key = _verifier(FixedClock(1_700_000_000.0), iat_window=60), DPoPKey()
    with pytest.raises(InvalidDpopProof, match="iat" if lenient_json else "invalid"):
        await v.verify(key.proof(URL, iat=10**400), method="POST", url=URL)


async def test_the_replay_key_is_the_key_and_the_jti() -> None:
    clock = FixedClock()
    v, a, b = _verifier(clock), DPoPKey(), DPoPKey()
    now = int(clock.now())
    await v.verify(a.proof(URL, jti="same", iat=now), method="POST", url=URL)
    await v.verify(b.proof(URL, jti="same", iat=now), method="POST", url=URL)  # another key: another proof
    with pytest.raises(InvalidDpopProof, match="already used"):
        await v.verify(a.proof(URL, jti="same", iat=now), method="POST", url=URL)
    clock.advance(200)  # the window closed: the id is forgotten, and an old proof is refused by its iat anyway
    await v.verify(a.proof(URL, jti="same", iat=int(clock.now())), method="POST", url=URL)


async def test_a_proof_recorded_early_is_checked_by_the_recorded_answer() -> None:
    """The web layer records a proof's id with the rate limits (one Redis round trip) and hands ``verify`` the
    answer: a replay is refused from it, and a first use does not touch the cache again."""
    clock = FixedClock()
    v, key = _verifier(clock), DPoPKey()
    proof = key.proof(URL, iat=int(clock.now()))
    rk = v.replay_key(proof)
    assert rk is not None
    with pytest.raises(InvalidDpopProof, match="already used"):
        await v.verify(proof, method="POST", url=URL, first_use=(rk, False))
    assert (await v.verify(proof, method="POST", url=URL, first_use=(rk, True))).jkt == key.jkt
    assert len(v.replay) == 0  # type: ignore[arg-type]  # not recorded twice
    # the key verify derives is the one replay_key read: with the answer for another key, the cache decides
    other = key.proof(URL, iat=int(clock.now()))
    assert (await v.verify(other, method="POST", url=URL, first_use=(rk, False))).jkt == key.jkt
    with pytest.raises(InvalidDpopProof, match="already used"):
        await v.verify(other, method="POST", url=URL)


def test_replay_key_reads_nothing_it_cannot_parse() -> None:
    clock = FixedClock()
    v, key = _verifier(clock), DPoPKey()
    good = key.proof(URL)
    head, body, sig = good.split(".")
    assert v.replay_key(good) == v.replay_key(f"{head}.{body}.AAAA")  # not verified: the signature is not read
    for bad in (None, "", "a.b", "a.b.c", good + "," + good, f"{head}.!!!.{sig}", "x" * 5000,
                key.proof(URL, jti=None), key.proof(URL, jti=""), key.proof(URL, jti="j" * 257),
                key.proof(URL, header={"jwk": None}), key.proof(URL, header={"jwk": {**key.jwk, "d": "x"}}),
                f"{b64url(json.dumps({'typ': 'dpop+jwt', 'alg': 'HS256', 'jwk': key.jwk}).encode())}.{body}.{sig}"):
        assert v.replay_key(bad) is None


async def test_nonces_live_one_to_two_periods_and_belong_to_the_secret() -> None:
    clock = FixedClock(1_800_000_000.0)
    v, key = _verifier(clock, nonce_lifetime=300), DPoPKey()
    with pytest.raises(UseDpopNonce) as refused:
        await v.verify(key.proof(URL, iat=int(clock.now())), method="POST", url=URL, require_nonce=True)
    nonce = refused.value.headers["DPoP-Nonce"]
    assert v.nonce_valid(nonce)
    assert _verifier(clock).nonce_valid(nonce)  # another process with the same secret accepts it
    assert not _verifier(clock, b"t" * 32).nonce_valid(nonce)  # another secret does not
    clock.advance(300)
    assert v.nonce_valid(nonce)  # the previous period still counts
    clock.advance(300)
    assert not v.nonce_valid(nonce)
    for junk in ("", "x" * 200, "!!!", None, 3):
        assert not v.nonce_valid(junk)


@pytest.mark.parametrize(("a", "b"), [
    ("https://AS.example.com/token", URL), ("HTTPS://as.example.com:443/token", URL),
    ("https://as.example.com/token?x=1#f", URL), ("http://h:80", "http://h/"),
])
def test_htu_normalisation(a: str, b: str) -> None:
    assert normalized_htu(a) == normalized_htu(b)


@pytest.mark.parametrize("url", ["https://as.example.com/Token", "https://as.example.com:8443/token",
                                 "http://as.example.com/token"])
def test_htu_differences_that_count(url: str) -> None:
    assert normalized_htu(url) != normalized_htu(URL)


async def test_the_size_cap_comes_before_parsing() -> None:
    v = _verifier(FixedClock())
    with pytest.raises(InvalidDpopProof, match="longer than"):
        await v.verify("x" * 1_000_000, method="POST", url=URL)


def test_ath_is_the_base64url_sha256_of_the_token() -> None:
    assert access_token_hash("abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
