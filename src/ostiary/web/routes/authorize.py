"""GET/POST /authorize and the consent form: HTTP in, :class:`AuthorizationRequest` to core, outcome rendered."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...core.clients import client_origin, uri_origin
from ...core.endpoints.authorize import (
    AuthorizationRequest,
    AuthorizationResponse,
    ErrorPage,
    NeedConsent,
    NeedLogin,
    Outcome,
)
from ...core.errors import InvalidRequest
from ..http import parse_query, read_form
from ..pages import Pages

__all__ = ["decode_authz", "flows", "form_of", "render_outcome", "routes"]

ERROR_TITLES = {"invalid_client": "Unknown application", "invalid_request": "Invalid sign-in request"}


def flows(request: Request) -> Pages:
    f: Pages = request.app.state.runtime.flows
    return f


async def form_of(request: Request) -> dict[str, str]:
    """A page's POSTed form; repeated fields keep the first value."""
    f = flows(request)
    pairs = await read_form(request, f.settings.server.max_body_bytes)
    out: dict[str, str] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def decode_authz(value: str | None) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    return parse_query(value)


def error_page(request: Request, error: str, description: str, status: int = 400) -> Response:
    return flows(request).render(request, "error.html", {"error": error, "description": description,
                                                         "title": ERROR_TITLES.get(error, "Cannot continue")},
                                 status=status)


async def render_outcome(request: Request, outcome: Outcome, *, username: str = "",
                         error: str | None = None, status: int = 200) -> Response:
    f = flows(request)
    if isinstance(outcome, ErrorPage):
        return error_page(request, outcome.error, outcome.description)
    if isinstance(outcome, AuthorizationResponse):
        if outcome.response_mode == "form_post":
            return f.render(request, "form_post.html", {"action": outcome.redirect_uri, "fields": outcome.params},
                            form_targets=[outcome.redirect_uri], script=True)
        return RedirectResponse(outcome.location(), status_code=303 if request.method == "POST" else 302,
                                headers={"Cache-Control": "no-store"})
    if isinstance(outcome, NeedLogin):
        return f.render(request, "login.html", {"authz": urlencode(outcome.params), "client_name": outcome.client.name,
                                                "username": username or outcome.login_hint or "", "error": error},
                        status=status, form_targets=[outcome.redirect_uri])
    assert isinstance(outcome, NeedConsent)
    user = await f.ctx.store.get_user(outcome.user_id)
    client = outcome.client
    origin = client_origin(client) if client.dynamic else None
    # a self-registered client's logo only from its own origin (never a third party's image, never a tracker)
    logo = client.logo_uri if origin and client.logo_uri and uri_origin(client.logo_uri) == origin else None
    return f.render(request, "consent.html", {
        "authz": urlencode(outcome.params), "client_name": client.name, "unverified": client.dynamic,
        "client_origin": origin or "", "logo_uri": logo or "",
        "username": user.username if user else "", "scopes": outcome.scopes, "new_scopes": outcome.new_scopes},
        form_targets=[outcome.redirect_uri], img_sources=[logo] if logo else ())


async def authorize(request: Request) -> Response:
    """RFC 6749 §3.1: GET with a query, or POST with a form (OIDC Core §3.1.2.1)."""
    f = flows(request)
    try:
        if request.method == "POST":
            params = tuple(await read_form(request, f.settings.server.max_body_bytes))
        else:
            params = parse_query(request.url.query)
    except InvalidRequest as exc:
        return error_page(request, "invalid_request", exc.description, exc.status)
    session = await f.sessions.load(request)
    outcome = await f.authorize.handle(AuthorizationRequest(params=params, session=f.session_info(session),
                                                            client_ip=request.client.host if request.client else None,
                                                            browser=f.browser_id(request)))
    resp = await render_outcome(request, outcome)
    f.set_browser_cookie(request, resp)
    return resp


async def consent(request: Request) -> Response:
    """The consent form's Allow / Deny."""
    f = flows(request)
    form = await form_of(request)
    if not f.csrf_ok(request, form):
        return error_page(request, "invalid_request", "The form expired. Go back and try again.", 403)
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return error_page(request, "invalid_request", "Choose Allow or Deny.")
    session = await f.sessions.load(request)
    outcome = await f.authorize.handle(AuthorizationRequest(
        params=decode_authz(form.get("authz")), session=f.session_info(session),
        consent="allow" if decision == "allow" else "deny",
        client_ip=request.client.host if request.client else None, browser=f.browser_id(request)))
    return await render_outcome(request, outcome)


routes = [
    Route("/authorize", authorize, methods=["GET", "POST"]),
    Route("/authorize/consent", consent, methods=["POST"]),
]
