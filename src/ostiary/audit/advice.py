"""Which flow fits which client: the two questions (who is the client? is a human in the loop?) and the answer,
with the command that registers such a client on an Ostiary server.

Pure data and functions: no I/O. The CLI asks the questions and prints.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["CLIENT_KINDS", "QUICK_REFERENCE", "ClientKind", "Recommendation", "default_user", "recommend"]

ClientKind = Literal["web", "spa", "mobile", "desktop", "cli", "tv", "iot", "service", "cron", "ci"]
CLIENT_KINDS: Final[dict[str, str]] = {
    "web": "a web app with its own backend (server-rendered, or a backend-for-frontend)",
    "spa": "a single-page app running only in the browser",
    "mobile": "a mobile app (iOS, Android)",
    "desktop": "a desktop app",
    "cli": "a command-line tool on a developer's machine",
    "tv": "a smart TV or console app",
    "iot": "an IoT or other input-constrained device",
    "service": "a backend service calling another service",
    "cron": "a scheduled job calling an API",
    "ci": "a CI/CD pipeline deploying or calling an API",
}
_HUMAN_BY_DEFAULT: Final = {"web", "spa", "mobile", "desktop", "cli", "tv", "iot"}

AUTH_CODE: Final = "Authorization Code + PKCE"
CLIENT_CREDENTIALS: Final = "Client Credentials"
DEVICE_CODE: Final = "Device Code"
FEDERATION: Final = "OIDC federation (token exchange)"
DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"

#: The quick reference: flow, when to use it, which clients. The last two rows are the flows never to use.
QUICK_REFERENCE: Final[tuple[tuple[str, str, str], ...]] = (
    (AUTH_CODE, "A human user is involved. Always with PKCE, even for confidential clients.",
     "web, spa, mobile, desktop"),
    (CLIENT_CREDENTIALS, "No user involved: service to service; the backend has a real secret store.",
     "service, cron"),
    (DEVICE_CODE, "A user is involved but the device cannot easily handle a browser redirect.", "cli, tv, iot"),
    (FEDERATION, "CI/CD to cloud or APIs: exchange the platform's OIDC token, store no secret.", "ci"),
    ("Implicit (never)", "Do not use: Auth Code + PKCE in browser-based apps instead.", "-"),
    ("Resource Owner Password (never)", "Do not use: Auth Code + PKCE always.", "-"),
)


@dataclass(frozen=True, slots=True)
class Recommendation:
    client: str
    user: bool
    flow: str
    why: str
    avoid: tuple[str, ...]
    command: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = ()

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def as_dict(self) -> dict[str, object]:
        return {"client": self.client, "user": self.user, "flow": self.flow, "why": self.why,
                "avoid": list(self.avoid), "command": self.command_line, "notes": list(self.notes)}


def default_user(client: str) -> bool:
    """Whether a human is in the loop when the user does not say."""
    return client in _HUMAN_BY_DEFAULT


_NO_IMPLICIT: Final = "Implicit (response_type=token): the token lands in browser history and logs (mistake 1)"
_NO_PASSWORD: Final = ("Resource Owner Password: it bypasses MFA and consent and teaches users to type their "
                       "password into apps (mistake 5)")
_NO_SECRET: Final = ("A client secret in the app: nothing shipped to users is secret; PKCE replaces it "
                     "(mistake 10)")
_NO_USER_TOKEN_FOR_SERVICE: Final = ("Client Credentials for calls made for a user: the API would not know "
                                     "which user (mistake 6)")


def _auth_code(client: str, public: bool, redirect: str, *, origin: str | None = None) -> tuple[str, ...]:
    cmd = ["ostiary", "client", "create", "--name", f"My {client} app"]
    if public:
        cmd.append("--public")
    cmd += ["--grant-type", "authorization_code", "--grant-type", "refresh_token", "--redirect-uri", redirect]
    if origin:
        cmd += ["--allowed-origin", origin]
    cmd += ["--scope", "openid profile offline_access"]
    return tuple(cmd)


def _service(name: str, audience: str) -> tuple[str, ...]:
    return ("ostiary", "client", "create", "--name", name, "--grant-type", "client_credentials",
            "--scope", "api:read", "--audience", audience)


def recommend(client: str, user: bool | None = None, *, issuer: str = "https://id.example.com",
              api: str = "https://api.example.com") -> Recommendation:
    """The flow for ``client`` (one of :data:`CLIENT_KINDS`), with or without a human in the loop.

    ``issuer`` is this server's issuer (the audience a CI job asks its platform for); ``api`` the audience of the
    API the client calls. Both appear in the suggested command, to be edited."""
    if client not in CLIENT_KINDS:
        raise ValueError(f"unknown client kind {client!r}: one of {', '.join(CLIENT_KINDS)}")
    human = default_user(client) if user is None else user
    avoid_common = (_NO_IMPLICIT, _NO_PASSWORD)
    if client == "ci":
        notes = ("A pipeline has no human in the loop; the run itself is the identity.",) if human else ()
        return Recommendation(
            client, False, FEDERATION,
            "The CI platform mints a short-lived OIDC token for each run; Ostiary exchanges it (RFC 8693) for a "
            "short-lived access token when a trust policy matches, so no long-lived secret is stored in CI.",
            ("A client secret stored as a CI secret: it lives forever and leaks with the logs",
             "Long-lived cloud keys in CI variables", _NO_PASSWORD),
            ("ostiary", "federation", "trust", "add", "--name", "acme/api deploy",
             "--issuer", "https://token.actions.githubusercontent.com", "--token-audience", issuer,
             "--claim", "repository=acme/api", "--claim-glob", "ref=refs/heads/main",
             "--subject", "ci:{repository}", "--scope", "deploy", "--audience", api),
            notes)
    if human:
        if client in ("cli", "tv", "iot"):
            return Recommendation(
                client, True, DEVICE_CODE,
                "The device shows a short code and a URL; the user approves on a phone or laptop with its full "
                "browser, MFA included. Nothing listens on a port and nothing is typed on the device but the code.",
                (_NO_PASSWORD, "A localhost redirect listener where a browser may not be available",
                 _NO_SECRET),
                ("ostiary", "client", "create", "--name", f"My {client} app", "--public",
                 "--grant-type", DEVICE_GRANT, "--grant-type", "refresh_token",
                 "--scope", "openid profile offline_access"),
                ("Store the tokens in the OS keyring (ostiary.client does).",))
        if client in ("service", "cron"):
            return Recommendation(
                client, True, AUTH_CODE,
                "A user is in the loop, so the user signs in at the front end (Authorization Code + PKCE) and the "
                "service receives that user's access token, with the service as its audience. A service token "
                "would authenticate the service, not the user.",
                (_NO_USER_TOKEN_FOR_SERVICE, *avoid_common),
                ("ostiary", "client", "create", "--name", "My web front end", "--grant-type", "authorization_code",
                 "--grant-type", "refresh_token", "--redirect-uri", "https://app.example.com/callback",
                 "--scope", "openid profile offline_access", "--audience", api),
                ("Background work with no user in it uses Client Credentials: run again with --no-user.",))
        if client == "web":
            return Recommendation(
                client, True, AUTH_CODE,
                "A user signs in through the browser; the backend exchanges the code with its secret and the PKCE "
                "verifier. PKCE is required even for confidential clients.",
                avoid_common, _auth_code("web", False, "https://app.example.com/callback"),
                ("Add openid for an ID token (OpenID Connect) when you need to know who the user is.",))
        redirect = {"spa": "https://app.example.com/callback", "mobile": "com.example.app:/oauth/callback",
                    "desktop": "http://127.0.0.1/callback"}[client]
        why = {"spa": "Everything in a browser app is public, so it is a public client: PKCE replaces the secret, "
                      "and refresh tokens rotate on every use.",
               "mobile": "An app on a phone cannot keep a secret: a public client with PKCE, redirecting to a "
                         "private-use URI scheme (or a claimed https link) through the system browser.",
               "desktop": "A desktop app cannot keep a secret: a public client with PKCE, redirecting to a loopback "
                          "address on any port through the system browser (RFC 8252 §7.3)."}[client]
        return Recommendation(client, True, AUTH_CODE, why, (*avoid_common, _NO_SECRET),
                              _auth_code(client, True, redirect,
                                         origin="https://app.example.com" if client == "spa" else None))
    # no human in the loop
    if client in ("service", "cron", "web", "iot"):
        return Recommendation(
            client, False, CLIENT_CREDENTIALS,
            "No user is involved: the client authenticates as itself with a secret (or a private_key_jwt key) kept "
            "in a real secret store, and gets a short-lived token for one API audience.",
            (_NO_USER_TOKEN_FOR_SERVICE, _NO_PASSWORD + " (a 'service account' with a password)",
             "Access tokens valid for hours or days (mistake 2)"),
            _service(f"My {client}", api),
            ("Each service gets its own client; request a new token when it expires (no refresh token).",))
    return Recommendation(
        client, False, CLIENT_CREDENTIALS + " on your backend",
        f"{CLIENT_KINDS[client].capitalize()} cannot keep a secret, so it cannot authenticate as itself. Work that "
        "needs no user belongs on a backend, which uses Client Credentials; the app calls that backend.",
        (_NO_SECRET, *avoid_common),
        _service(f"Backend of my {client} app", api),
        ("If a user is in fact present, run again with --user.",))
