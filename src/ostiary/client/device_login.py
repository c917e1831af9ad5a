"""Log a person in from a terminal with the Device Authorization Grant (RFC 8628): the ``gh auth login`` pattern.

:class:`DeviceLogin` finds the device authorization endpoint in the issuer's metadata, shows the
verification URL, the user code and a QR code of ``verification_uri_complete``, and polls the token endpoint
at the server's interval (adding 5 seconds on each ``slow_down``, §3.5) with a spinner showing the time left.
It raises :class:`~ostiary.client.errors.AccessDenied`, :class:`~ostiary.client.errors.Expired` or
:class:`~ostiary.client.errors.LoginCancelled` (Ctrl-C) with messages meant for the person at the terminal.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from .._clock import Clock, SystemClock
from .._json import loads as json_loads
from ..core import jose
from .discovery import require_https
from .dpop import DpopKey
from .errors import AccessDenied, DiscoveryError, Expired, LoginCancelled, OAuthError, TokenEndpointUnavailable
from .issuer import IssuerClient
from .token_store import StoredTokens

__all__ = ["DEVICE_GRANT", "DeviceCode", "DeviceLogin", "account_of", "tokens_from_response"]

DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """RFC 8628 §3.2 Device Authorization Response. ``device_code`` is hidden from ``repr``."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int
    expires_at: float


def account_of(tokens: dict[str, Any]) -> str:
    """The account label for the token store: the ``sub`` of the id_token, else of the access token."""
    for name in ("id_token", "access_token"):
        value = tokens.get(name)
        if isinstance(value, str) and value.count(".") == 2:
            try:
                _, claims = jose.decode_unverified(value)
            except jose.JoseError:
                continue
            sub = claims.get("sub")
            if isinstance(sub, str) and sub:
                return sub
    return "default"


def tokens_from_response(issuer: str, client_id: str, body: dict[str, Any], now: float,
                         previous: StoredTokens | None = None, dpop_key: DpopKey | None = None) -> StoredTokens:
    """RFC 6749 §5.1 → :class:`StoredTokens`. A refresh response without a new refresh token keeps the old one.
    ``dpop_key``: the key the request's DPoP proof was made with, stored with the tokens (RFC 9449)."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError("invalid_response", "no access_token in the token response", 200)
    lifetime = body.get("expires_in", 300)
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        raise OAuthError("invalid_response", "expires_in is not a positive number", 200)
    refresh = body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None
    id_token = body.get("id_token") if isinstance(body.get("id_token"), str) else None
    scope = body.get("scope") if isinstance(body.get("scope"), str) else None
    account = previous.account if previous is not None else account_of(body)
    token_type = body.get("token_type")
    if isinstance(token_type, str) and token_type.lower() == "dpop":
        if dpop_key is None:
            raise OAuthError("invalid_response", "a DPoP token came back for a request without a DPoP proof", 200)
        token_type = "DPoP"
    else:
        token_type = "Bearer"
    key_pem = dpop_key.to_pem() if dpop_key is not None else (previous.dpop_key if previous else None)
    return StoredTokens(issuer=issuer, client_id=client_id, account=account, access_token=access,
                        expires_at=now + float(lifetime),
                        refresh_token=refresh or (previous.refresh_token if previous else None),
                        id_token=id_token or (previous.id_token if previous else None),
                        scope=scope or (previous.scope if previous else None), token_type=token_type,
                        dpop_key=key_pem)


def _optional_https(value: Any) -> str | None:
    """RFC 8628 §3.3.1 ``verification_uri_complete``: shown and QR-encoded, so held to the same https rule as
    ``verification_uri`` (http only on loopback)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("verification_uri_complete is not a string")
    return require_https(value, "verification_uri_complete")


def _error(response: httpx.Response) -> OAuthError:
    try:
        body = json_loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return OAuthError("invalid_response", f"the server answered HTTP {response.status_code}", response.status_code)
    desc = body.get("error_description")
    return OAuthError(body["error"], desc if isinstance(desc, str) else None, response.status_code)


class DeviceLogin(IssuerClient):
    """One device-flow login for ``client_id`` at ``issuer``.

    ``run()`` does everything and returns :class:`StoredTokens` (save them in a
    :class:`~ostiary.client.token_store.TokenStore`). ``start()`` and ``poll()`` are the two halves, for
    programs that show the code themselves. Public clients need no secret (RFC 8628 §3.1). When the issuer
    advertises DPoP (or ``dpop=True``), one new DPoP key is made for the login, every token request carries a
    proof by it, and the key is returned with the tokens (``StoredTokens.dpop_key``) to be stored with them.
    """

    def __init__(self, issuer: str, client_id: str, *, scope: str | None = "openid offline_access",
                 client_secret: str | None = None, resource: str | None = None,
                 http_client: httpx.Client | None = None, clock: Clock | None = None,
                 sleep: Callable[[float], None] = time.sleep, console: Any | None = None, show_qr: bool = True,
                 timeout: float = 15.0, dpop: bool | None = None) -> None:
        super().__init__(issuer, client_id, client_secret=client_secret, http_client=http_client, timeout=timeout,
                         dpop=dpop)
        self.scope = scope
        self.resource = resource
        self._clock: Clock = clock or SystemClock()
        self._sleep = sleep
        self._console = console
        self._show_qr = show_qr

    def __repr__(self) -> str:
        return f"DeviceLogin(issuer={self.issuer!r}, client_id={self.client_id!r}, scope={self.scope!r})"

    # -- RFC 8628 ------------------------------------------------------------------------------------

    def start(self) -> DeviceCode:
        """RFC 8628 §3.1 Device Authorization Request."""
        form: dict[str, str] = {}
        if self.scope:
            form["scope"] = self.scope
        if self.resource:
            form["resource"] = self.resource
        try:
            response = self._post(self._endpoint("device_authorization_endpoint"), form)
        except httpx.TransportError as exc:
            raise TokenEndpointUnavailable(f"cannot reach {self.issuer}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _error(response)
        try:
            body = json_loads(response.content)
            expires_in = int(body.get("expires_in", 600))
            return DeviceCode(device_code=str(body["device_code"]), user_code=str(body["user_code"]),
                              verification_uri=require_https(str(body["verification_uri"]), "verification_uri"),
                              verification_uri_complete=_optional_https(body.get("verification_uri_complete")),
                              expires_in=expires_in, interval=max(1, int(body.get("interval", 5))),
                              expires_at=self._clock.now() + expires_in)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise OAuthError("invalid_response", "the device authorization response is incomplete", 200) from exc

    def poll(self, code: DeviceCode, on_wait: Callable[[float, int], None] | None = None) -> StoredTokens:
        """RFC 8628 §3.4-3.5: poll until the user decides or the code expires.

        ``on_wait(seconds_left, interval)`` is called about ten times a second while waiting.
        """
        token_endpoint = self.metadata().token_endpoint
        if token_endpoint is None:
            raise DiscoveryError("the issuer's metadata has no token_endpoint")
        interval = code.interval
        failures = 0
        key = DpopKey.generate() if self.dpop_enabled() else None  # one key for the token set of this login
        while True:
            self._wait(interval, code, on_wait)
            try:
                response = self._post(token_endpoint, {"grant_type": DEVICE_GRANT, "device_code": code.device_code},
                                      dpop_key=key)
            except httpx.TransportError:
                failures += 1  # keep trying until the code expires; back off a little (§3.5)
                interval = min(interval * 2, 60) if failures > 2 else interval
                continue
            if response.status_code >= 500:
                failures += 1
                continue
            failures = 0
            if response.status_code == 200:
                return tokens_from_response(self.issuer, self.client_id, json_loads(response.content),
                                            self._clock.now(), dpop_key=key)
            err = _error(response)
            if err.error == "authorization_pending":
                continue
            if err.error == "slow_down":
                interval += 5
                continue
            if err.error == "access_denied":
                raise AccessDenied("The login was denied in the browser. Nothing was changed; run the login "
                                   "again if that was a mistake.")
            if err.error == "expired_token":
                raise Expired("The code expired before it was approved. Run the login again and enter the new "
                              "code within the time shown.")
            raise err

    def _wait(self, seconds: float, code: DeviceCode, on_wait: Callable[[float, int], None] | None) -> None:
        end = self._clock.now() + seconds
        while True:
            now = self._clock.now()
            if now >= code.expires_at:
                raise Expired("The code expired before it was approved. Run the login again and enter the new "
                              "code within the time shown.")
            if now >= end:
                return
            if on_wait is not None:
                on_wait(code.expires_at - now, int(seconds))
            self._sleep(min(0.1, end - now))

    # -- the whole thing, in a terminal --------------------------------------------------------------

    def instructions(self, code: DeviceCode) -> str:
        lines = [f"To sign in, open {code.verification_uri} in a browser and enter the code:", "",
                 f"    {code.user_code}", ""]
        if code.verification_uri_complete:
            lines.append(f"Or open {code.verification_uri_complete}")
        return "\n".join(lines)

    def qr_text(self, code: DeviceCode) -> str:
        """The QR code of ``verification_uri_complete`` as terminal text (half-block characters)."""
        import segno

        out = io.StringIO()
        segno.make(code.verification_uri_complete or code.verification_uri, error="m").terminal(out=out,
                                                                                                 compact=True)
        return out.getvalue()

    def run(self) -> StoredTokens:
        """Start, show the URL, code and QR code, poll with a spinner. Ctrl-C raises :class:`LoginCancelled`."""
        from rich.console import Console

        console = self._console or Console(stderr=True, highlight=False)
        try:
            code = self.start()
            console.print(self.instructions(code), soft_wrap=True, markup=False)
            if self._show_qr and code.verification_uri_complete:
                console.print("Or scan this QR code with your phone:", markup=False)
                console.file.write(self.qr_text(code))
                console.file.flush()
            with console.status("Waiting for approval…") as status:

                def tick(left: float, interval: int) -> None:
                    m, s = divmod(int(left), 60)
                    status.update(f"Waiting for approval in the browser… {m}:{s:02d} left (checking every "
                                  f"{interval} s; Ctrl-C to cancel)")

                tokens = self.poll(code, tick)
            return tokens
        except KeyboardInterrupt:
            raise LoginCancelled("Login cancelled. No tokens were stored.") from None
        finally:
            self.close()
