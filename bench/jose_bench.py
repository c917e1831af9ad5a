"""core/jose.py against joserfc (and PyJWT) for what issue 11.7 asks about: should joserfc replace them?

Measures, per algorithm (ES256, RS256, EdDSA), the same work done three ways where it applies:

* ``thumbprint``  RFC 7638 thumbprint from a JWK dict: ``jose.jwk_thumbprint`` vs joserfc
                  (``import_key`` then ``thumbprint()``: joserfc computes it on a key object).
* ``jwks``        parse a three-key JWKS into verification keys: ``jose.parse_jwks`` (PyJWT's PyJWK) vs
                  joserfc ``KeySet.import_key_set``.
* ``verify``      an RFC 9068 access token: signature, ``typ``, ``iss``, ``aud``, ``exp`` required, injected clock:
                  ``jose.verify_jwt`` (PyJWT underneath) vs joserfc ``jwt.decode`` + ``JWTClaimsRegistry``.
* ``sign``        the same claims: ``jose.sign_jwt`` (cryptography directly, cached header) vs PyJWT
                  ``jwt.encode`` vs joserfc ``jwt.encode``.

CPU time of one thread (``time.process_time``), ``--runs`` interleaved rounds, median µs per operation.

    .venv/bin/python bench/jose_bench.py --runs 7 --seconds 0.3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from joserfc import jwt as jfjwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from ostiary.core import jose

ISS, AUD = "https://id.example.com", "https://api.example.com"
_JF_KEY = {"EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}


def _timer(fn: Callable[[], Any], seconds: float) -> float:
    """µs per call of ``fn`` (CPU time), calling it for about ``seconds``."""
    n, batch = 0, 16
    start = time.process_time()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        spent = time.process_time() - start
        if spent >= seconds:
            return spent / n * 1e6
        batch *= 2


def cases(alg: jose.SigningAlg) -> dict[str, dict[str, Callable[[], Any]]]:
    priv = jose.generate_private_key(alg)
    jwk = jose.public_jwk(priv, "k1")
    others = [jose.public_jwk(jose.generate_private_key(a), f"k{i}") for i, a in
              enumerate(("ES256", "RS256", "EdDSA"), start=2) if a != alg]
    jwks = {"keys": [jwk, *others]}
    now = int(time.time())
    claims = {"iss": ISS, "sub": "user-1", "aud": AUD, "client_id": "web-app", "scope": "orders:read",
              "iat": now, "exp": now + 900, "jti": "b3e1c1f4a3c54b7e9a0f", "auth_time": now}
    token = jose.sign_jwt(claims, priv, alg=alg, kid="k1", typ="at+jwt")
    ours_keys = jose.parse_jwks(jwks)
    jf_keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    jf_priv = _JF_KEY[jwk["kty"]].import_key(priv)  # type: ignore[attr-defined]
    jf_alg = alg  # the tokens say "EdDSA" (RFC 8037); joserfc accepts it when asked by name
    registry = jfjwt.JWTClaimsRegistry(now=now, iss={"essential": True, "value": ISS},
                                       aud={"essential": True, "value": AUD}, exp={"essential": True})

    def jf_verify() -> Any:
        tok = jfjwt.decode(token, jf_keys, algorithms=[jf_alg])
        if tok.header.get("typ") != "at+jwt":
            raise ValueError("typ")
        registry.validate(tok.claims)
        return tok.claims

    def jf_thumbprint() -> str:
        return _JF_KEY[jwk["kty"]].import_key(jwk).thumbprint()  # type: ignore[attr-defined,no-any-return]

    return {
        "thumbprint": {"ours": lambda: jose.jwk_thumbprint(jwk), "joserfc": jf_thumbprint},
        "jwks": {"ours": lambda: jose.parse_jwks(jwks), "joserfc": lambda: KeySet.import_key_set(jwks)},  # type: ignore[arg-type]
        "verify": {"ours": lambda: jose.verify_jwt(token, ours_keys, issuer=ISS, audience=AUD, typ="at+jwt",
                                                   now=now),
                   "joserfc": jf_verify},
        "sign": {"ours": lambda: jose.sign_jwt(claims, priv, alg=alg, kid="k1", typ="at+jwt"),
                 "pyjwt": lambda: pyjwt.encode(claims, priv, algorithm=alg, headers={"kid": "k1", "typ": "at+jwt"}),
                 "joserfc": lambda: jfjwt.encode({"alg": jf_alg, "kid": "k1", "typ": "at+jwt"}, claims, jf_priv,
                                                 algorithms=[jf_alg])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3, help="CPU seconds per measurement")
    args = ap.parse_args()
    # joserfc warns on every "EdDSA" token (RFC 9864 deprecates the name for "Ed25519"); once is enough
    warnings.filterwarnings("once", message="EdDSA is deprecated")
    import importlib.metadata as md

    print(f"# {platform.processor() or platform.machine()} Python {platform.python_version()}; "
          + ", ".join(f"{p} {md.version(p)}" for p in ("PyJWT", "joserfc", "cryptography")))
    print("| alg | operation | ours µs | PyJWT µs | joserfc µs | joserfc / ours |")
    print("|---|---|---:|---:|---:|---:|")
    for alg in ("ES256", "RS256", "EdDSA"):
        table = cases(alg)  # type: ignore[arg-type]
        for op, impls in table.items():
            for fn in impls.values():  # the checks agree before anything is timed
                fn()
            samples: dict[str, list[float]] = {name: [] for name in impls}
            for _ in range(args.runs):  # interleaved, so load on the shared machine hits all alike
                for name, fn in impls.items():
                    samples[name].append(_timer(fn, args.seconds))
            med = {name: statistics.median(v) for name, v in samples.items()}
            pyjwt_cell = f"{med['pyjwt']:.1f}" if "pyjwt" in med else "—"
            print(f"| {alg} | {op} | {med['ours']:.1f} | {pyjwt_cell} | {med['joserfc']:.1f} | "
                  f"{med['joserfc'] / med['ours']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
