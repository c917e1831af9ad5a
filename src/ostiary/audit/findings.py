"""Findings: what an audit reports, and the catalogue of every check it can report.

Each check has a stable id, the number of the production mistake it finds (the ten classic OAuth mistakes, 1-10,
or ``None`` for a check that is not one of them), a severity, a title, the fix, and the RFC section it rests on.
The catalogue is the single place these are written: the audits only add the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["CHECKS", "MISTAKES", "SEVERITIES", "Check", "Finding", "Kind", "Report", "Severity", "at_or_above"]

Severity = Literal["high", "medium", "low", "info"]
Kind = Literal["issuer", "api", "bundle"]
SEVERITIES: Final[tuple[Severity, ...]] = ("high", "medium", "low", "info")

#: The ten production mistakes, by number.
MISTAKES: Final[dict[int, str]] = {
    1: "Implicit flow",
    2: "Long-lived access tokens",
    3: "Refresh tokens not rotated",
    4: "Tokens in URL parameters",
    5: "Resource Owner Password grant for 'trusted' apps",
    6: "Client Credentials for user-context calls",
    7: "No audience validation",
    8: "Skipping signature verification",
    9: "Accepting tokens from any issuer",
    10: "Client secrets in the SPA or mobile bundle",
}


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    mistake: int | None
    severity: Severity
    title: str
    fix: str
    reference: str


def _c(id: str, mistake: int | None, severity: Severity, title: str, fix: str, reference: str) -> Check:
    return Check(id, mistake, severity, title, fix, reference)


_ALL: Final[tuple[Check, ...]] = (
    # -- the issuer, from its metadata and JWKS
    _c("issuer.unreachable", None, "info", "The issuer could not be assessed",
       "Check the URL: it must be the issuer identifier, serving /.well-known/openid-configuration or "
       "/.well-known/oauth-authorization-server.", "RFC 8414 §3"),
    _c("issuer.metadata-issuer-mismatch", None, "high", "The metadata names a different issuer",
       "Publish metadata whose issuer is exactly the issuer URL; clients must refuse any other.", "RFC 8414 §3.3"),
    _c("issuer.implicit", 1, "high", "Implicit flow offered: access tokens returned in the redirect URL",
       "Offer only response_type=code (with PKCE) and move browser apps to Authorization Code + PKCE.",
       "RFC 9700 §2.1.2"),
    _c("issuer.hybrid", 1, "low", "Implicit or hybrid response types that put an ID token in the URL",
       "Offer only response_type=code; use the token endpoint for every token.", "RFC 9700 §2.1.2"),
    _c("issuer.password-grant", 5, "high", "Resource Owner Password grant offered",
       "Turn the password grant off; first-party apps use Authorization Code + PKCE, devices use Device Code.",
       "RFC 9700 §2.4"),
    _c("issuer.pkce-not-advertised", None, "medium", "PKCE support not advertised",
       "Support PKCE with S256 for every authorization-code client and publish code_challenge_methods_supported.",
       "RFC 9700 §2.1.1"),
    _c("issuer.pkce-plain", None, "medium", "PKCE method 'plain' accepted",
       "Accept only S256: 'plain' gives no protection when the authorization request leaks.", "RFC 7636 §4.2"),
    _c("issuer.pkce-no-s256", None, "high", "PKCE S256 not supported",
       "Support S256, the mandatory-to-implement PKCE method.", "RFC 7636 §4.2"),
    _c("issuer.no-iss-parameter", None, "low", "No iss parameter in authorization responses (mix-up defence)",
       "Return iss in authorization responses and publish authorization_response_iss_parameter_supported.",
       "RFC 9207 §3"),
    _c("issuer.public-clients-without-pkce", None, "high", "Public clients (auth method 'none') without PKCE",
       "Require PKCE (S256) for every public client.", "RFC 9700 §2.1.1"),
    _c("issuer.not-https", None, "high", "An endpoint is not served over https",
       "Serve the issuer and every endpoint over https (http only on loopback, for development).",
       "RFC 6749 §10.9"),
    _c("issuer.alg-none", 8, "high", "Unsigned tokens ('alg: none') advertised",
       "Sign every token with an asymmetric algorithm (ES256, RS256, EdDSA); never advertise 'none'.",
       "RFC 8725 §3.2"),
    _c("issuer.alg-hmac", None, "medium", "Shared-secret (HMAC) signing advertised for tokens",
       "Sign tokens with asymmetric keys so verifiers need only the public JWKS.", "RFC 8725 §3.2"),
    _c("issuer.jwks-unavailable", None, "medium", "No usable JWKS: tokens cannot be verified",
       "Publish jwks_uri with the public signing keys.", "RFC 8414 §2"),
    _c("issuer.jwks-weak-key", None, "high", "RSA signing key shorter than 2048 bits",
       "Rotate to RSA keys of 2048 bits or more, or to EC P-256 / Ed25519.", "RFC 7518 §3.3"),
    _c("issuer.jwks-private-key", None, "high", "Private or symmetric key material published in the JWKS",
       "Publish only public members (kty, crv, x, y, n, e); rotate the exposed key now.", "RFC 7518 §6.3.2"),
    _c("issuer.no-revocation", None, "low", "No token revocation endpoint",
       "Offer revocation so clients can end a refresh token at logout.", "RFC 7009 §2"),
    _c("issuer.no-sender-constraint", None, "info", "No sender-constrained tokens offered (DPoP or mTLS)",
       "Consider DPoP for public clients; refresh-token rotation is the alternative the BCP accepts.",
       "RFC 9700 §2.2.1"),
    _c("issuer.cors-authorize", None, "low", "CORS allowed on the authorization endpoint",
       "Serve no CORS headers on the authorization endpoint: it is for top-level browser navigation only.",
       "RFC 6749 §3.1"),
    # -- the issuer, with client credentials
    _c("issuer.client-credentials-failed", None, "info", "No token could be obtained with the client credentials",
       "Check --client-id and the secret, and that the client may use the client_credentials grant.",
       "RFC 6749 §4.4.2"),
    _c("issuer.long-lived-token", 2, "high", "Access tokens live longer than an hour",
       "Issue access tokens for 15-60 minutes; use refresh tokens (users) or a new request (services).",
       "RFC 6819 §5.1.5.3"),
    _c("issuer.token-no-expiry", 2, "high", "Access token without an expiry",
       "Give every access token an exp claim and expires_in.", "RFC 6819 §5.1.5.3"),
    _c("issuer.token-no-audience", 7, "medium", "Access token without an audience",
       "Restrict each access token to the API it is for (aud claim, RFC 8707 resource indicators).",
       "RFC 9700 §2.3"),
    _c("issuer.token-wildcard-audience", 7, "medium", "Access token with a wildcard audience",
       "Restrict each access token to the API it is for, never '*'.", "RFC 9700 §2.3"),
    _c("issuer.token-typ", None, "low", "JWT access token without 'typ: at+jwt'",
       "Type access tokens 'at+jwt' so they cannot be confused with ID tokens.", "RFC 9068 §2.1"),
    _c("issuer.token-cacheable", None, "medium", "Token response without 'Cache-Control: no-store'",
       "Send Cache-Control: no-store on every response that carries a token.", "RFC 6749 §5.1"),
    _c("issuer.query-token", 4, "high", "Access token accepted in the URL query string",
       "Accept access tokens only in the Authorization header; refuse access_token in the query.",
       "RFC 9700 §4.3.2"),
    _c("issuer.service-token-as-user", 6, "medium", "Userinfo answers a client-credentials token",
       "A service token names no user: refuse it where a user is expected (userinfo, user APIs).",
       "RFC 9068 §2.2"),
    # -- the issuer, spending a refresh token
    _c("issuer.refresh-failed", None, "info", "The refresh token could not be used",
       "Give a refresh token that is still valid, with the client it was issued to (--client-id).",
       "RFC 6749 §6"),
    _c("issuer.refresh-not-rotated", 3, "high", "Refresh tokens are not rotated on use",
       "Issue a new refresh token on every use and refuse the old one.", "RFC 9700 §4.14.2"),
    _c("issuer.refresh-reuse-accepted", 3, "high", "A spent refresh token still works",
       "Refuse a refresh token that was already used.", "RFC 9700 §4.14.2"),
    _c("issuer.refresh-family-not-revoked", 3, "medium", "Reusing a spent refresh token does not revoke the family",
       "When a spent refresh token comes back, revoke every token descended from the same grant.",
       "RFC 9700 §4.14.2"),
    _c("issuer.refresh-rotation-ok", None, "info", "Refresh tokens rotate and reuse revokes the family",
       "Nothing to do.", "RFC 9700 §4.14.2"),
    # -- an API (resource server), with forged tokens
    _c("api.not-assessed", None, "info", "The API could not be assessed",
       "Give a route that needs a token and a token the API accepts (a dead or always-401 API proves nothing).",
       "RFC 6750 §3"),
    _c("api.alg-none", 8, "high", "The API accepts an unsigned token ('alg: none')",
       "Verify every token's signature with the issuer's JWKS; take the algorithm from the key, never the token.",
       "RFC 8725 §3.1"),
    _c("api.hmac-public-key", 8, "high", "The API accepts an HS256 token signed with the issuer's public key",
       "Allow only the issuer's asymmetric algorithms; never let the token's alg choose HMAC.", "RFC 8725 §3.1"),
    _c("api.signature-stripped", 8, "high", "The API accepts a token with its signature removed",
       "Verify the signature of every token against the issuer's JWKS.", "RFC 9068 §4"),
    _c("api.signature-corrupted", 8, "high", "The API accepts a token with a corrupted signature",
       "Verify the signature of every token against the issuer's JWKS.", "RFC 9068 §4"),
    _c("api.payload-tampered", 8, "high", "The API accepts a token whose claims were changed after signing",
       "Verify the signature of every token against the issuer's JWKS.", "RFC 9068 §4"),
    _c("api.unknown-kid", 8, "high", "The API accepts a token signed by a key the issuer never published",
       "Verify only with keys from the issuer's JWKS; refuse a kid that is not there.", "RFC 9068 §4"),
    _c("api.key-from-token", 8, "high", "The API verifies with a key the token itself names (jku, jwk or x5u)",
       "Ignore key-carrying headers; use only the pinned issuer's JWKS.", "RFC 8725 §3.10"),
    _c("api.any-issuer", 9, "high", "The API accepts tokens from an issuer it should not trust",
       "Pin the issuer: compare iss exactly and fetch keys only from that issuer's metadata.", "RFC 8725 §3.8"),
    _c("api.wrong-audience", 7, "high", "The API accepts a token issued for another audience",
       "Check that aud names this API.", "RFC 8725 §3.9"),
    _c("api.expired", None, "high", "The API accepts an expired token",
       "Check exp (a small clock-skew leeway at most).", "RFC 7519 §4.1.4"),
    _c("api.not-yet-valid", None, "medium", "The API accepts a token that is not yet valid",
       "Check nbf and iat.", "RFC 7519 §4.1.5"),
    _c("api.crit-ignored", None, "low", "The API accepts a token with a critical header it cannot understand",
       "Refuse tokens whose crit lists an extension you do not implement.", "RFC 7515 §4.1.11"),
    _c("api.typ-not-checked", None, "medium", "The API accepts a JWT that is not typed 'at+jwt' (e.g. an ID token)",
       "Require typ at+jwt so that ID tokens and other JWTs are refused.", "RFC 9068 §4"),
    _c("api.query-token", 4, "high", "The API accepts the access token in the URL query string",
       "Read the token only from the Authorization header; refuse access_token in the query.", "RFC 9700 §4.3.2"),
    _c("api.body-token-wins", None, "low", "The API reads a token from the body when the header has another",
       "Read one method only (the Authorization header); refuse requests that use more than one.", "RFC 6750 §2"),
    _c("api.service-token-on-user-route", 6, "high", "A user route accepts a client-credentials (service) token",
       "Refuse tokens whose sub is the client itself (no user) on routes that act for a user.", "RFC 9068 §2.2"),
    _c("api.scope-not-checked", None, "medium", "The API accepts a token without the route's scope",
       "Check the scope claim on every route (403 insufficient_scope).", "RFC 6750 §3.1"),
    _c("api.claims-not-assessed", None, "info", "Some claim checks could not be tried from outside",
       "The API accepts only the issuer's signature (good); to try them, give more genuine tokens on stdin.",
       "RFC 9068 §4"),
    # -- a front-end or mobile bundle
    _c("bundle.not-assessed", None, "info", "The bundle could not be read", "Give a file or a directory.",
       "RFC 8252 §8.5"),
    _c("bundle.client-secret", 10, "high", "A client secret ships in the bundle",
       "Remove it and rotate it now; a browser or mobile app is a public client: use Authorization Code + PKCE.",
       "RFC 8252 §8.5"),
    _c("bundle.private-key", 10, "high", "A private key ships in the bundle",
       "Remove it and rotate the key; nothing shipped to users is secret.", "RFC 8252 §8.5"),
    _c("bundle.refresh-token", 10, "high", "A refresh token ships in the bundle",
       "Remove it and revoke it; refresh tokens are issued per user at runtime.", "RFC 6749 §10.4"),
    _c("bundle.implicit", 1, "high", "The code asks for tokens in the redirect URL (response_type=token)",
       "Use Authorization Code + PKCE (response_type=code).", "RFC 9700 §2.1.2"),
    _c("bundle.password-grant", 5, "high", "The code uses the password grant",
       "Use Authorization Code + PKCE; never collect the user's password in the app.", "RFC 9700 §2.4"),
)

CHECKS: Final[dict[str, Check]] = {c.id: c for c in _ALL}


@dataclass(frozen=True, slots=True)
class Finding:
    """One result. ``path`` and ``line`` locate a bundle finding (also given in the evidence)."""

    check: Check
    evidence: str
    path: str | None = None
    line: int | None = None

    @classmethod
    def of(cls, check_id: str, evidence: str, *, path: str | None = None, line: int | None = None) -> Finding:
        return cls(CHECKS[check_id], evidence, path, line)

    @property
    def severity(self) -> Severity:
        return self.check.severity

    def as_dict(self) -> dict[str, object]:
        c = self.check
        return {"id": c.id, "mistake": c.mistake, "severity": c.severity, "title": c.title,
                "evidence": self.evidence, "fix": c.fix, "reference": c.reference}


def at_or_above(severity: Severity, threshold: Severity) -> bool:
    return SEVERITIES.index(severity) <= SEVERITIES.index(threshold)


@dataclass(slots=True)
class Report:
    """The result of one audit. ``assessed`` is false when the target could not be checked at all (or not with
    what the user asked for): such a report is never a pass."""

    target: str
    kind: Kind
    assessed: bool = True
    findings: list[Finding] = field(default_factory=list)

    def add(self, check_id: str, evidence: str, *, path: str | None = None, line: int | None = None) -> None:
        self.findings.append(Finding.of(check_id, evidence, path=path, line=line))

    def ids(self) -> list[str]:
        return [f.check.id for f in self.findings]

    def sorted(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (SEVERITIES.index(f.severity), f.check.id))

    def as_dict(self) -> dict[str, object]:
        """The documented ``--json`` schema."""
        return {"target": self.target, "kind": self.kind, "assessed": self.assessed,
                "findings": [f.as_dict() for f in self.sorted()]}

    def exit_code(self, fail_on: Severity = "high") -> int:
        """0: nothing at or above ``fail_on``; 1: something is; 2: the target could not be assessed."""
        if not self.assessed:
            return 2
        return 1 if any(at_or_above(f.severity, fail_on) for f in self.findings) else 0
