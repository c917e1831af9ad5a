"""What the sign-in, consent and account pages need, built once per process: templates, CSRF, sessions,
login throttling, and the core endpoints for the code flow."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .._passwords import HasherBusy, PasswordHashPool
from .._secrets import derive_key
from ..config import Settings, is_loopback_url
from ..core.context import EngineContext
from ..core.endpoints.authorize import SCOPE_DESCRIPTIONS, AuthorizeEndpoint, SessionInfo
from ..core.endpoints.logout import LogoutEndpoint
from ..core.endpoints.userinfo import UserinfoEndpoint
from ..core.users import LoginSession, User
from . import metrics
from .csrf import CsrfGuard
from .ratelimit import Attempt, RateLimiter, client_network
from .sessions import SessionManager

__all__ = ["BUSY", "LoginResult", "UserFlows", "origin_of"]

TEMPLATES = Path(__file__).with_name("templates")
PAGE_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BUSY = "Too many sign-ins at the moment. Try again in a few seconds."


def origin_of(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    if parts.scheme:
        return parts.scheme + ":"
    return None


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User | None
    error: str | None = None
    status: int = 200


class UserFlows:
    def __init__(self, settings: Settings, ctx: EngineContext, limiter: RateLimiter) -> None:
        self.settings = settings
        self.ctx = ctx
        self.limiter = limiter
        self.hasher = PasswordHashPool(settings.login.hash_workers, settings.login.hash_queue)
        master = settings.master_secret()
        https = not (settings.issuer.startswith("http://") and is_loopback_url(settings.issuer))
        self.totp_key = derive_key(master, "totp-secret-sealing")
        self.csrf = CsrfGuard(derive_key(master, "csrf"), "__Host-ostiary_csrf" if https else "ostiary_csrf")
        self.sessions = SessionManager(ctx.store, ctx.clock, ctx.secret_hash_key, https=https,
                                       ttl=settings.sessions.ttl, idle_ttl=settings.sessions.idle_ttl)
        self.authorize = AuthorizeEndpoint(ctx)
        self.userinfo = UserinfoEndpoint(ctx)
        self.logout = LogoutEndpoint(ctx)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.globals["scope_text"] = lambda s: SCOPE_DESCRIPTIONS.get(s, s)
        self.env.globals["issuer"] = settings.issuer

    # pages
    def render(self, request: Request, template: str, context: Mapping[str, Any] | None = None, *,
               status: int = 200, form_targets: Iterable[str] = (), script: bool = False) -> HTMLResponse:
        """A page with its CSP: forms may post here and to ``form_targets`` (the client's redirect origin, so
        a redirect after a form is allowed); never framed; scripts only from /static when asked."""
        cookie = request.cookies.get(self.csrf.cookie_name)
        new_cookie = None
        if not cookie or len(cookie) > 100:
            cookie = new_cookie = self.csrf.new_cookie()
        body = self.env.get_template(template).render(csrf_token=self.csrf.token_for(cookie), **(context or {}))
        targets = " ".join(dict.fromkeys(o for o in (origin_of(t) for t in form_targets) if o))
        csp = (f"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {targets}".rstrip()
               + "; frame-ancestors 'none'; base-uri 'none'" + ("; script-src 'self'" if script else ""))
        headers = {**PAGE_NO_STORE, "Content-Security-Policy": csp, "X-Frame-Options": "DENY"}
        resp = HTMLResponse(body, status_code=status, headers=headers)
        if new_cookie is not None:
            resp.set_cookie(self.csrf.cookie_name, new_cookie, path="/", secure=self.sessions.secure, httponly=True,
                            samesite="lax")
        return resp

    def csrf_ok(self, request: Request, form: Mapping[str, str]) -> bool:
        return self.csrf.check(request.cookies.get(self.csrf.cookie_name), form.get("csrf_token"))

    @staticmethod
    def session_info(session: LoginSession | None) -> SessionInfo | None:
        if session is None:
            return None
        return SessionInfo(user_id=session.user_id, session_id=session.session_id, auth_time=session.auth_time,
                           amr=session.amr)

    # login
    def _attempts(self, account: str, ip: str | None) -> list[Attempt]:
        """The counters one sign-in attempt (password or second factor) takes a slot on: its account (the
        resolved user id; for an unknown name, the name as typed) and its address (IPv6: the /64)."""
        cfg = self.settings.login
        out = [Attempt("login_account", "login:acct:" + account, cfg.max_failures_per_account, cfg.failure_window)]
        if ip:
            out.append(Attempt("login_ip", "login:ip:" + client_network(ip), cfg.max_failures_per_ip,
                               cfg.failure_window))
        return out

    @staticmethod
    def account_key(user: User | None, login: str) -> str:
        return "user:" + user.user_id if user is not None else "name:" + login.strip().lower()[:200]

    async def begin_attempt(self, account: str, ip: str | None) -> str | None:
        """Reserve one attempt before checking a password or code (so parallel attempts cannot all pass a
        check made before any of them failed); the refusal message, or None. A reserved attempt counts as
        failed unless :meth:`attempt_succeeded` takes it back."""
        refused = await self.limiter.reserve(self._attempts(account, ip))
        if refused is None:
            return None
        metrics.RATE_LIMITED.labels(refused[0]).inc()
        minutes = max(1, math.ceil(self.settings.login.failure_window / 60))
        return f"Too many attempts. Try again in {minutes} minutes."

    async def attempt_succeeded(self, account: str, ip: str | None) -> None:
        await self.limiter.release(self._attempts(account, ip))

    async def check_password(self, login: str, password: str, ip: str | None) -> LoginResult:
        """Same answer, and about the same time, whether or not the account exists. Throttled per resolved
        account (the username and the email address share one counter) and per address."""
        user = await self.ctx.store.find_user(login) if 0 < len(login) <= 320 else None
        account = self.account_key(user, login)
        wait = await self.begin_attempt(account, ip)
        if wait:
            return LoginResult(None, wait, 429)
        try:
            check = await self.hasher.verify(user.password_hash if user is not None else None, password)
        except HasherBusy:
            await self.attempt_succeeded(account, ip)  # not checked: not counted
            metrics.PASSWORD_HASH_BUSY.inc()
            return LoginResult(None, BUSY, 429)
        if user is None or not check.ok or user.disabled:
            return LoginResult(None, "Incorrect username or password.", 400)
        await self.attempt_succeeded(account, ip)
        if check.new_hash is not None:  # argon2 parameters changed since this hash was made
            user = replace(user, password_hash=check.new_hash)
            await self.ctx.store.update_user(user)
        return LoginResult(user)

    def close(self) -> None:
        self.hasher.close()

    async def allowed_origins(self) -> frozenset[str]:
        """Every origin registered on some client (for CORS)."""
        return frozenset(o for c in await self.ctx.store.list_clients() for o in c.allowed_origins)
