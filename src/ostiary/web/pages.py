"""What the sign-in, consent and account pages need, built once per process: templates, CSRF, sessions,
the sign-in checks (:mod:`ostiary.signin`), and the core endpoints for the code flow."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .._passwords import PasswordHashPool
from .._secrets import derive_key
from ..config import Settings, is_loopback_url
from ..core.context import EngineContext
from ..core.endpoints.authorize import SCOPE_DESCRIPTIONS, AuthorizeEndpoint, SessionInfo
from ..core.endpoints.logout import LogoutEndpoint
from ..core.endpoints.userinfo import UserinfoEndpoint
from ..core.ratelimit import RateLimiter
from ..core.users import LoginSession
from ..signin import Authenticator, Outcome, SignInLimits, SignInResult
from . import metrics
from .csrf import CsrfGuard
from .sessions import SessionManager

__all__ = ["BUSY", "Pages", "origin_of"]

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


class Pages:
    """The browser pages' shared kit (one per process): templates, CSRF, sessions, sign-in checks, code-flow
    endpoints. The pages themselves are routes (``web/routes/authorize.py``, ``account.py``, ``device.py``)."""

    def __init__(self, settings: Settings, ctx: EngineContext, limiter: RateLimiter) -> None:
        self.settings = settings
        self.ctx = ctx
        self.limiter = limiter
        self.hasher = PasswordHashPool(settings.login.hash_workers, settings.login.hash_queue)
        master = settings.master_secret()
        https = not (settings.issuer.startswith("http://") and is_loopback_url(settings.issuer))
        self.totp_key = derive_key(master, "totp-secret-sealing")
        login = settings.login
        self.signin = Authenticator(ctx.store, limiter, self.hasher, ctx.clock,
                                    SignInLimits(login.max_failures_per_account, login.max_failures_per_ip,
                                                 login.failure_window),
                                    totp_key=self.totp_key, recovery_key=ctx.secret_hash_key)
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
               status: int = 200, form_targets: Iterable[str] = (), script: bool = False,
               img_sources: Iterable[str] = ()) -> HTMLResponse:
        """A page with its CSP: forms may post here and to ``form_targets`` (the client's redirect origin, so
        a redirect after a form is allowed); images from here and ``img_sources`` (a client's own logo); never
        framed; scripts only from /static when asked."""
        cookie = request.cookies.get(self.csrf.cookie_name)
        new_cookie: str | None = getattr(request.state, "new_csrf_cookie", None)
        if new_cookie is not None:
            cookie = new_cookie
        elif not cookie or len(cookie) > 100:
            cookie = new_cookie = self.csrf.new_cookie()
        body = self.env.get_template(template).render(csrf_token=self.csrf.token_for(cookie), **(context or {}))
        targets = " ".join(dict.fromkeys(o for o in (origin_of(t) for t in form_targets) if o))
        images = "".join(f" {o}" for o in dict.fromkeys(o for o in (origin_of(i) for i in img_sources) if o))
        csp = (f"default-src 'none'; style-src 'self'; img-src 'self' data:{images}; form-action 'self' {targets}"
               .rstrip()
               + "; frame-ancestors 'none'; base-uri 'none'" + ("; script-src 'self'" if script else ""))
        headers = {**PAGE_NO_STORE, "Content-Security-Policy": csp, "X-Frame-Options": "DENY"}
        resp = HTMLResponse(body, status_code=status, headers=headers)
        if new_cookie is not None:
            resp.set_cookie(self.csrf.cookie_name, new_cookie, path="/", secure=self.sessions.secure, httponly=True,
                            samesite="lax")
        return resp

    def browser_id(self, request: Request) -> str:
        """The browser's CSRF cookie, made now if it has none (then set by :meth:`render` or
        :meth:`set_browser_cookie`): what binds a pushed authorization request to the browser that opened it."""
        cookie = request.cookies.get(self.csrf.cookie_name)
        if cookie and len(cookie) <= 100:
            return cookie
        new: str | None = getattr(request.state, "new_csrf_cookie", None)
        if new is None:
            new = request.state.new_csrf_cookie = self.csrf.new_cookie()
        return new

    def set_browser_cookie(self, request: Request, resp: Response) -> None:
        """Set the cookie :meth:`browser_id` made, on a response :meth:`render` did not make."""
        new: str | None = getattr(request.state, "new_csrf_cookie", None)
        if new is not None and self.csrf.cookie_name not in resp.headers.get("set-cookie", ""):
            resp.set_cookie(self.csrf.cookie_name, new, path="/", secure=self.sessions.secure, httponly=True,
                            samesite="lax")

    def csrf_ok(self, request: Request, form: Mapping[str, str]) -> bool:
        return self.csrf.check(request.cookies.get(self.csrf.cookie_name), form.get("csrf_token"))

    @staticmethod
    def session_info(session: LoginSession | None) -> SessionInfo | None:
        if session is None:
            return None
        return SessionInfo(user_id=session.user_id, session_id=session.session_id, auth_time=session.auth_time,
                           amr=session.amr)

    # sign-in: the checks are ostiary.signin's; the words, statuses and metrics are the pages'
    def refusal(self, result: SignInResult, wrong: str) -> tuple[str, int]:
        """What a page says about a sign-in step that did not pass, and its status: ``wrong`` (400) for a wrong
        password or code, else a throttle or a full hashing pool (429, counted in the metrics)."""
        if result.outcome is Outcome.THROTTLED:
            metrics.RATE_LIMITED.labels(result.throttled_by or "login").inc()
            return self.too_many_attempts, 429
        if result.outcome is Outcome.BUSY:
            metrics.PASSWORD_HASH_BUSY.inc()
            return BUSY, 429
        return wrong, 400

    @property
    def too_many_attempts(self) -> str:
        minutes = max(1, math.ceil(self.settings.login.failure_window / 60))
        return f"Too many attempts. Try again in {minutes} minutes."

    def close(self) -> None:
        self.hasher.close()

    async def allowed_origins(self) -> frozenset[str]:
        """Every origin registered on some client (for CORS)."""
        return frozenset(o for c in await self.ctx.store.list_clients() for o in c.allowed_origins)
