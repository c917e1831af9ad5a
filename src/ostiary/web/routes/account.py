"""Sign-in (password, then TOTP when enrolled), sign-out (RP-initiated logout too), and the account page."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import replace
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..._passwords import new_totp_secret, totp_uri
from ...core.audit import AuditEvent
from ...core.endpoints.authorize import AuthorizationRequest
from ...core.errors import InvalidRequest
from ...core.sealing import SealError, seal, unseal
from ...core.user_tokens import revoke_user_families
from ...core.users import LoginSession, User
from ...signin import Outcome
from ..http import parse_query, read_form
from ..pages import BUSY, Pages
from .authorize import decode_authz, error_page, flows, form_of, render_outcome
from .common import CSRF_FAILED, WRONG_CODE, WRONG_PASSWORD, client_ip

__all__ = ["routes"]

REAUTH_FAILED = "Enter your password or a current code from your authenticator app."


def _audit(f: Pages, type_: str, outcome: str, request: Request, user_id: str | None, **detail: object) -> None:
    f.ctx.audit.emit(AuditEvent(type=type_, outcome="success" if outcome == "success" else "failure",
                                at=f.ctx.clock.now(), subject=user_id, ip=client_ip(request), detail=detail))


async def _continue(request: Request, f: Pages, session: LoginSession, authz: str | None) -> Response:
    """After a successful sign-in: back into the authorization request, or to the account page."""
    params = decode_authz(authz)
    if not params:
        return RedirectResponse("/account", status_code=303)
    outcome = await f.authorize.handle(AuthorizationRequest(params=params, session=f.session_info(session),
                                                            fresh_login=True, client_ip=client_ip(request),
                                                            browser=f.browser_id(request)))
    return await render_outcome(request, outcome)


async def _client_context(f: Pages, authz: str | None) -> dict[str, str]:
    params = dict(decode_authz(authz))
    client = await f.ctx.store.get_client(params.get("client_id", "")[:256]) if params.get("client_id") else None
    return {"client_name": client.name if client else ""}


def _targets(authz: str | None) -> list[str]:
    uri = dict(decode_authz(authz)).get("redirect_uri")
    return [uri] if uri else []


async def login_page(request: Request) -> Response:
    f = flows(request)
    return f.render(request, "login.html", {"authz": "", "client_name": "", "username": "", "error": None})


async def login(request: Request) -> Response:
    f = flows(request)
    form = await form_of(request)
    authz = form.get("authz")
    ctx = {"authz": authz or "", "username": form.get("username", "")[:320], **await _client_context(f, authz)}
    if not f.csrf_ok(request, form):
        return f.render(request, "login.html", {**ctx, "error": CSRF_FAILED}, status=403)
    username = form.get("username", "")
    result = await f.signin.check_password(username, form.get("password", ""), client_ip(request))
    if result.user is None:
        error, status = f.refusal(result, WRONG_PASSWORD)
        _audit(f, "login.failed", "failure", request, None, reason=error)
        return f.render(request, "login.html", {**ctx, "error": error}, status=status, form_targets=_targets(authz))
    user = result.user
    old = await f.sessions.load(request, allow_pending=True)
    if old is not None:
        await f.ctx.store.end_session(old.session_id)  # a new sign-in gets a new session id (no fixation)
    token, session = await f.sessions.create(user, ("pwd",), request, mfa_pending=user.has_totp)
    resp: Response
    if user.has_totp:
        resp = f.render(request, "totp.html", {"authz": authz or "", "error": None}, form_targets=_targets(authz))
    else:
        _audit(f, "login.succeeded", "success", request, user.user_id, amr=["pwd"])
        resp = await _continue(request, f, session, authz)
    f.sessions.set_cookie(resp, token)
    return resp


async def login_totp(request: Request) -> Response:
    f = flows(request)
    form = await form_of(request)
    authz = form.get("authz")
    if not f.csrf_ok(request, form):
        return f.render(request, "totp.html", {"authz": authz or "", "error": CSRF_FAILED}, status=403)
    session = await f.sessions.load(request, allow_pending=True)
    user = await f.ctx.store.get_user(session.user_id) if session is not None else None
    if session is None or user is None or not session.mfa_pending:
        ctx = {"authz": authz or "", "username": "", "error": "Sign in first.", **await _client_context(f, authz)}
        return f.render(request, "login.html", ctx, status=400)
    result = await f.signin.check_second_factor(user, form.get("code", "")[:40], client_ip(request))
    if result.outcome is Outcome.THROTTLED:
        return f.render(request, "totp.html", {"authz": authz or "", "error": f.refusal(result, WRONG_CODE)[0]},
                        status=429)
    if not result.ok:
        _audit(f, "login.failed", "failure", request, user.user_id, reason="second factor")
        return f.render(request, "totp.html", {"authz": authz or "", "error": WRONG_CODE},
                        status=400, form_targets=_targets(authz))
    now = f.ctx.clock.now()
    session = replace(session, mfa_pending=False, amr=("pwd", "otp"), auth_time=now, last_seen=now)
    await f.ctx.store.update_session(session)
    _audit(f, "login.succeeded", "success", request, user.user_id, amr=["pwd", "otp"])
    return await _continue(request, f, session, authz)


async def _logout_params(request: Request) -> tuple[tuple[str, str], ...]:
    if request.method == "POST":
        return tuple(await read_form(request, flows(request).settings.server.max_body_bytes))
    return parse_query(request.url.query, 50)


async def _finish_logout(request: Request, f: Pages, session: LoginSession | None, redirect: str | None
                         ) -> Response:
    if session is not None:
        await f.ctx.store.end_session(session.session_id)
        _audit(f, "logout", "success", request, session.user_id)
    resp: Response
    if redirect:
        resp = RedirectResponse(redirect, status_code=303, headers={"Cache-Control": "no-store"})
    else:
        resp = f.render(request, "signed_out.html")
    f.sessions.clear_cookie(resp)
    return resp


async def logout(request: Request) -> Response:
    """OpenID Connect RP-Initiated Logout §2 (GET or POST): validate, then sign out (asking first unless the
    id_token_hint names the signed-in user)."""
    f = flows(request)
    try:
        params = await _logout_params(request)
        decision = await f.logout.check(params)
    except InvalidRequest as exc:
        return error_page(request, "invalid_request", exc.description)
    session = await f.sessions.load(request, allow_pending=True)
    if session is None or (decision.hint_subject is not None and decision.hint_subject == session.user_id):
        return await _finish_logout(request, f, session, decision.redirect)
    return f.render(request, "logout.html", {"client_name": decision.client.name if decision.client else "",
                                             "logout_params": urlencode(params)},
                    form_targets=[decision.redirect] if decision.redirect else [])


async def logout_confirm(request: Request) -> Response:
    f = flows(request)
    form = await form_of(request)
    if not f.csrf_ok(request, form):
        return error_page(request, "invalid_request", CSRF_FAILED, 403)
    try:
        decision = await f.logout.check(decode_authz(form.get("logout_params")))
    except InvalidRequest as exc:
        return error_page(request, "invalid_request", exc.description)
    return await _finish_logout(request, f, await f.sessions.load(request, allow_pending=True), decision.redirect)


async def _signed_in(request: Request) -> tuple[Pages, LoginSession | None, User | None]:
    f = flows(request)
    session = await f.sessions.load(request)
    user = await f.ctx.store.get_user(session.user_id) if session is not None else None
    return f, session, user


async def _account_post(request: Request) -> Response | tuple[Pages, LoginSession, User, dict[str, str]]:
    """A form posted from the account page: refused without its CSRF token, sent to sign-in without a
    session; otherwise who posted it, and the form."""
    f, session, user = await _signed_in(request)
    form = await form_of(request)
    if not f.csrf_ok(request, form):
        return error_page(request, "invalid_request", CSRF_FAILED, 403)
    if session is None or user is None:
        return RedirectResponse("/login", status_code=303)
    return f, session, user, form


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def account(request: Request, notice: str | None = None, error: str | None = None,
                  status: int = 200) -> Response:
    f, session, user = await _signed_in(request)
    if session is None or user is None:
        return RedirectResponse("/login", status_code=303)
    store = f.ctx.store
    now = f.ctx.clock.now()
    granted: dict[str, set[str]] = {}
    for c in await store.list_consents(user.user_id):
        granted.setdefault(c.client_id, set()).update(c.scopes)
    for fam in await store.list_families(user.user_id):
        if fam.expires_at > now:
            granted.setdefault(fam.client_id, set()).update(fam.scopes)
    apps = []
    for client_id, scopes in sorted(granted.items()):
        client = await store.get_client(client_id)
        apps.append({"client_id": client_id, "name": client.name if client else client_id,
                     "scopes": sorted(scopes)})
    sessions = [{"session_id": s.session_id, "created": _ts(s.created_at), "ip": s.ip or "",
                 "user_agent": (s.user_agent or "")[:80], "current": s.session_id == session.session_id}
                for s in await store.list_sessions(user.user_id) if s.active(now, f.sessions.idle_ttl)]
    return f.render(request, "account.html", {
        "user": user, "apps": apps, "sessions": sessions, "notice": notice, "error": error,
        "recovery_left": await store.count_recovery_codes(user.user_id)}, status=status)


async def end_session(request: Request) -> Response:
    posted = await _account_post(request)
    if isinstance(posted, Response):
        return posted
    f, session, user, form = posted
    target = form.get("session_id", "")
    if any(s.session_id == target for s in await f.ctx.store.list_sessions(user.user_id)):
        await f.ctx.store.end_session(target)
        _audit(f, "session.ended", "success", request, user.user_id)
    if target == session.session_id:
        return await _finish_logout(request, f, None, None)
    return await account(request, "Signed out of that session.")


async def revoke_app(request: Request) -> Response:
    posted = await _account_post(request)
    if isinstance(posted, Response):
        return posted
    f, _session, user, form = posted
    client_id = form.get("client_id", "")[:256]
    await f.ctx.store.delete_consent(user.user_id, client_id)
    n = await revoke_user_families(f.ctx.store, user.user_id, f.ctx.clock.now(), client_id)
    _audit(f, "consent.revoked", "success", request, user.user_id, client_id=client_id, families=n)
    return await account(request, "Access revoked.")


def _qr_svg(uri: str) -> str:
    import segno

    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="svg", xmldecl=False, svgns=True, scale=4, svgclass="qr")
    return buf.getvalue().decode()


async def _enroll_page(request: Request, f: Pages, user: User, session: LoginSession, secret: str,
                       error: str | None = None, status: int = 200) -> Response:
    pending = seal(secret.encode(), f.totp_key, "enrol:" + session.session_id).hex()
    uri = totp_uri(secret, user.username, "Ostiary " + f.settings.issuer.split("://", 1)[1])
    return f.render(request, "totp_enroll.html", {"qr_svg": _qr_svg(uri), "secret": secret, "pending": pending,
                                                  "error": error, "reauth": user.has_totp}, status=status)


async def _reauthenticated(request: Request, f: Pages, user: User, proof: str) -> str | None:
    """Changing a second factor that is on takes more than the session: the password, or a current code
    (TOTP or a recovery code). None when proven; else the message to show. Failures count towards the
    sign-in throttle of the account and the address."""
    result = await f.signin.reauthenticate(user, proof, client_ip(request))
    if result.ok:
        return None
    if result.outcome is Outcome.THROTTLED:
        return f.refusal(result, REAUTH_FAILED)[0]
    if result.outcome is Outcome.BUSY:  # not checked: not counted (and no 429 here: the page says why)
        return BUSY
    _audit(f, "reauth.failed", "failure", request, user.user_id)
    return REAUTH_FAILED


async def _end_other_sessions(f: Pages, user: User, current: LoginSession) -> int:
    """After the second factor changed: every other browser signs in again."""
    n = 0
    for s in await f.ctx.store.list_sessions(user.user_id):
        if s.session_id != current.session_id and await f.ctx.store.end_session(s.session_id):
            n += 1
    return n


async def totp_enroll(request: Request) -> Response:
    f, session, user = await _signed_in(request)
    if session is None or user is None:
        return RedirectResponse("/login", status_code=303)
    if request.method == "GET":
        return await _enroll_page(request, f, user, session, new_totp_secret())
    form = await form_of(request)
    if not f.csrf_ok(request, form):
        return error_page(request, "invalid_request", CSRF_FAILED, 403)
    try:
        secret = unseal(bytes.fromhex(form.get("pending", "")), f.totp_key, "enrol:" + session.session_id).decode()
    except (SealError, ValueError):
        return error_page(request, "invalid_request", CSRF_FAILED, 400)
    if not f.signin.totp_code_matches(secret, form.get("code", "")[:20]):
        return await _enroll_page(request, f, user, session, secret, "That code is not valid; try the next one.", 400)
    if user.has_totp:  # re-enrolment replaces the current factor: prove it is you, not only this browser
        refused = await _reauthenticated(request, f, user, form.get("confirm", ""))
        if refused:
            return await _enroll_page(request, f, user, session, secret, refused, 400)
    codes = await f.signin.enable_totp(user, secret)
    ended = await _end_other_sessions(f, user, session)
    _audit(f, "totp.enrolled", "success", request, user.user_id, replaced=user.has_totp, sessions_ended=ended)
    return f.render(request, "recovery_codes.html", {"codes": codes})


async def totp_disable(request: Request) -> Response:
    posted = await _account_post(request)
    if isinstance(posted, Response):
        return posted
    f, session, user, form = posted
    if not user.has_totp:
        return await account(request, "Two-step verification is off.")
    refused = await _reauthenticated(request, f, user, form.get("confirm", ""))
    if refused:
        return await account(request, error=refused, status=400)
    await f.signin.disable_totp(user)
    ended = await _end_other_sessions(f, user, session)
    _audit(f, "totp.disabled", "success", request, user.user_id, sessions_ended=ended)
    return await account(request, "Two-step verification is off; your other sessions were signed out.")


async def account_page(request: Request) -> Response:
    return await account(request)


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/login/totp", login_totp, methods=["POST"]),
    Route("/logout", logout, methods=["GET", "POST"]),
    Route("/logout/confirm", logout_confirm, methods=["POST"]),
    Route("/account", account_page, methods=["GET"]),
    Route("/account/sessions/end", end_session, methods=["POST"]),
    Route("/account/apps/revoke", revoke_app, methods=["POST"]),
    Route("/account/totp", totp_enroll, methods=["GET", "POST"]),
    Route("/account/totp/disable", totp_disable, methods=["POST"]),
]
