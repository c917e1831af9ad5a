"""The device flow over HTTP (RFC 8628): ``POST /device_authorization`` and the verification pages.

Pages: ``GET /device`` (``?user_code=`` prefills the code, §3.3.1) → ``POST /device`` (code checked, with
attempt limits per IP and per browser, and an alarm on the global count, §5.1) → sign-in with the second factor
when the browser is not signed in → a confirmation page naming the client with the phishing warning (§5.4) →
Approve or Deny. Every form carries the CSRF token of the code-flow pages.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...core.audit import AuditEvent
from ...core.device import DeviceAuthorization, format_user_code, normalise_user_code
from ...core.errors import InvalidClient
from ...core.ratelimit import Attempt, client_network
from ...core.users import LoginSession
from ...signin import Outcome
from .. import metrics
from ..device_poll import DeviceEndpoints
from ..http import NO_STORE, json_response, protocol_route
from ..pages import Pages
from .authorize import flows, form_of
from .common import CSRF_FAILED, WRONG_CODE, WRONG_PASSWORD, client_ip, endpoint_request, record_failure, runtime

__all__ = ["routes"]

log = logging.getLogger("ostiary.device")

BAD_CODE = "That code is not valid, or it has expired. Check the code on your device and try again."


def _dev(request: Request) -> DeviceEndpoints:
    return runtime(request).device


@protocol_route("device_authorization")
async def device_authorization(request: Request) -> Response:
    """RFC 8628 §3.1-3.2."""
    rt = runtime(request)
    req = await endpoint_request(request, rt, rt.policy.issuer + "/device_authorization")
    try:
        body = await rt.device.authorization.handle(req)
    except InvalidClient:
        await record_failure(rt, req)
        raise
    return json_response(body, headers=NO_STORE)


# -- attempt limits (RFC 8628 §5.1) ---------------------------------------------------------------


def _attempts(request: Request, f: Pages) -> list[Attempt]:
    """The counters a typed code takes a slot on: its address (IPv6: the /64) and its browser."""
    cfg = f.settings.device
    out = []
    ip = client_ip(request)
    if ip:
        out.append(Attempt("device_ip", "device:ip:" + client_network(ip), cfg.attempts_per_ip, cfg.attempt_window))
    browser = request.cookies.get(f.csrf.cookie_name)
    if browser:
        out.append(Attempt("device_browser", "device:browser:" + hashlib.sha256(browser.encode()).hexdigest()[:32],
                           cfg.attempts_per_session, cfg.attempt_window))
    return out


async def _count_wrong_code(f: Pages) -> None:
    """The server-wide count of wrong codes is an alarm, never a refusal: refusing everyone once it is reached
    would lock out every real user (and a valid code is never refused because of it)."""
    cfg = f.settings.device
    count = await f.limiter.record_failure("device:global", cfg.attempt_window)
    if count > cfg.attempts_global:
        metrics.DEVICE_GUESSING.inc()
        if count == cfg.attempts_global + 1:
            log.warning("user-code guessing: more than %d wrong codes in %d s across the server",
                        cfg.attempts_global, cfg.attempt_window)


async def _lookup(request: Request, f: Pages, typed: str) -> tuple[DeviceAuthorization | None, str | None]:
    """The authorization the typed code names, or an error message for the page (throttled, or wrong). The
    attempt is reserved before the look-up (parallel guesses cannot overrun the limits) and given back when
    the code was right."""
    attempts = _attempts(request, f)
    refused = await f.limiter.reserve(attempts)
    if refused is not None:
        metrics.RATE_LIMITED.labels(refused[0]).inc()
        minutes = max(1, math.ceil(f.settings.device.attempt_window / 60))
        return None, f"Too many attempts. Try again in {minutes} minutes."
    auth = await _dev(request).verification.lookup(typed[:40], ip=client_ip(request))
    if auth is None:
        await _count_wrong_code(f)
        return None, BAD_CODE
    await f.limiter.release(attempts)
    return auth, None


def _status(error: str | None) -> int:
    return 400 if error == BAD_CODE else 429


# -- pages -----------------------------------------------------------------------------------------


def _code_page(request: Request, f: Pages, user_code: str, *, signed_in: bool, error: str | None = None,
               status: int = 200) -> Response:
    return f.render(request, "device_code.html", {"user_code": user_code, "error": error, "signed_in": signed_in},
                    status=status)


async def _posted_code(request: Request, f: Pages, *, signed_in: bool
                       ) -> Response | tuple[DeviceAuthorization, dict[str, str]]:
    """A form posted from a page that carries the user code (sign-in, second factor, decision): refused without
    its CSRF token; otherwise the authorization the code names and the form, or the code page saying why not."""
    form = await form_of(request)
    if not f.csrf_ok(request, form):
        return _code_page(request, f, "", signed_in=signed_in, error=CSRF_FAILED, status=403)
    auth, error = await _lookup(request, f, form.get("user_code", ""))
    if auth is None:
        return _code_page(request, f, "", signed_in=signed_in, error=error, status=_status(error))
    return auth, form


async def _confirm_page(request: Request, f: Pages, auth: DeviceAuthorization, session: LoginSession
                        ) -> Response:
    client = await f.ctx.store.get_client(auth.client_id)
    user = await f.ctx.store.get_user(session.user_id)
    ctx: dict[str, Any] = {
        "client_name": client.name if client else auth.client_id, "username": user.username if user else "",
        "scopes": sorted(auth.scopes), "user_code": auth.user_code, "shown_code": format_user_code(auth.user_code),
    }
    return f.render(request, "device_confirm.html", ctx)


async def _login_page(request: Request, f: Pages, auth: DeviceAuthorization, *, username: str = "",
                      error: str | None = None, status: int = 200) -> Response:
    client = await f.ctx.store.get_client(auth.client_id)
    return f.render(request, "device_login.html", {
        "client_name": client.name if client else auth.client_id, "user_code": auth.user_code,
        "username": username, "error": error}, status=status)


async def device_page(request: Request) -> Response:
    """RFC 8628 §3.3 (and §3.3.1: ``verification_uri_complete`` prefills the code; the user still confirms)."""
    f = flows(request)
    typed = request.query_params.get("user_code", "")[:40]
    prefill = format_user_code(code) if (code := normalise_user_code(typed)) else ""
    session = await f.sessions.load(request)
    return _code_page(request, f, prefill, signed_in=session is not None)


async def device_submit(request: Request) -> Response:
    f = flows(request)
    form = await form_of(request)
    typed = form.get("user_code", "")[:40]
    session = await f.sessions.load(request)
    if not f.csrf_ok(request, form):
        return _code_page(request, f, typed, signed_in=session is not None, error=CSRF_FAILED, status=403)
    auth, error = await _lookup(request, f, typed)
    if auth is None:
        return _code_page(request, f, typed, signed_in=session is not None, error=error, status=_status(error))
    if session is None:
        return await _login_page(request, f, auth)
    return await _confirm_page(request, f, auth, session)


async def device_login(request: Request) -> Response:
    """Sign-in for the device flow, with the code-flow's password check, throttling and sessions."""
    f = flows(request)
    posted = await _posted_code(request, f, signed_in=False)
    if isinstance(posted, Response):
        return posted
    auth, form = posted
    username = form.get("username", "")[:320]
    result = await f.signin.check_password(username, form.get("password", ""), client_ip(request))
    if result.user is None:
        error, status = f.refusal(result, WRONG_PASSWORD)
        f.ctx.audit.emit(_event(f, "login.failed", request, None, reason=error, flow="device"))
        return await _login_page(request, f, auth, username=username, error=error, status=status)
    user = result.user
    old = await f.sessions.load(request, allow_pending=True)
    if old is not None:
        await f.ctx.store.end_session(old.session_id)  # a new sign-in gets a new session (no fixation)
    token, session = await f.sessions.create(user, ("pwd",), request, mfa_pending=user.has_totp)
    if user.has_totp:
        resp: Response = f.render(request, "device_totp.html", {"user_code": auth.user_code, "error": None})
    else:
        f.ctx.audit.emit(_event(f, "login.succeeded", request, user.user_id, amr=["pwd"], flow="device"))
        resp = await _confirm_page(request, f, auth, session)
    f.sessions.set_cookie(resp, token)
    return resp


async def device_login_totp(request: Request) -> Response:
    f = flows(request)
    posted = await _posted_code(request, f, signed_in=False)
    if isinstance(posted, Response):
        return posted
    auth, form = posted
    page = {"user_code": auth.user_code}
    session = await f.sessions.load(request, allow_pending=True)
    user = await f.ctx.store.get_user(session.user_id) if session is not None else None
    if session is None or user is None or not session.mfa_pending:
        return await _login_page(request, f, auth, error="Sign in first.", status=400)
    result = await f.signin.check_second_factor(user, form.get("code", "")[:40], client_ip(request))
    if result.outcome is Outcome.THROTTLED:
        return f.render(request, "device_totp.html", {**page, "error": f.refusal(result, WRONG_CODE)[0]}, status=429)
    if not result.ok:
        f.ctx.audit.emit(_event(f, "login.failed", request, user.user_id, reason="second factor", flow="device"))
        return f.render(request, "device_totp.html", {**page, "error": WRONG_CODE}, status=400)
    now = f.ctx.clock.now()
    session = replace(session, mfa_pending=False, amr=("pwd", "otp"), auth_time=now, last_seen=now)
    await f.ctx.store.update_session(session)
    f.ctx.audit.emit(_event(f, "login.succeeded", request, user.user_id, amr=["pwd", "otp"], flow="device"))
    return await _confirm_page(request, f, auth, session)


async def device_confirm(request: Request) -> Response:
    """The user's decision (RFC 8628 §3.3): approve or deny, once."""
    f = flows(request)
    session = await f.sessions.load(request)
    posted = await _posted_code(request, f, signed_in=session is not None)
    if isinstance(posted, Response):
        return posted
    auth, form = posted
    if session is None:
        return await _login_page(request, f, auth, error="Your sign-in expired. Sign in again.", status=401)
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        return await _confirm_page(request, f, auth, session)
    approve = decision == "approve"
    ok = await _dev(request).verification.decide(auth, approve, user_id=session.user_id,
                                                 session_id=session.session_id, auth_time=session.auth_time,
                                                 amr=session.amr, ip=client_ip(request))
    if not ok:
        return _code_page(request, f, "", signed_in=True, error=BAD_CODE, status=400)
    client = await f.ctx.store.get_client(auth.client_id)
    name = client.name if client else auth.client_id
    if approve:
        ctx = {"outcome": "approved", "title": "Device connected",
               "message": f"{name} is now signed in. You can close this window and return to your device."}
    else:
        ctx = {"outcome": "denied", "title": "Request denied",
               "message": f"{name} was not given access. You can close this window."}
    return f.render(request, "device_done.html", ctx)


def _event(f: Pages, type_: str, request: Request, user_id: str | None, **detail: Any) -> AuditEvent:
    return AuditEvent(type=type_, outcome="success" if type_.endswith("succeeded") else "failure",
                      at=f.ctx.clock.now(), subject=user_id, ip=client_ip(request), detail=detail)


routes = [
    Route("/device_authorization", device_authorization, methods=["POST"]),
    Route("/device", device_page, methods=["GET"]),
    Route("/device", device_submit, methods=["POST"]),
    Route("/device/login", device_login, methods=["POST"]),
    Route("/device/login/totp", device_login_totp, methods=["POST"]),
    Route("/device/confirm", device_confirm, methods=["POST"]),
]
