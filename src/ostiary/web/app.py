"""``create_app(settings)``: the ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from .._clock import Clock
from ..config import Settings, load_settings
from .client_ip import ClientAddress
from .cors import ResponseHeaders
from .guard import RequestGuard
from .logs import configure_logging, install_loop_handler
from .request_context import RequestContext
from .runtime import Runtime

__all__ = ["app_from_env", "create_app", "route_table"]


def route_table() -> list[BaseRoute]:
    """The one route table: every path the server answers."""
    from .routes import account, admin, authorize, device, oauth, registration, userinfo

    static = Mount("/static", app=StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    return [*oauth.routes, *admin.routes, *authorize.routes, *account.routes, *userinfo.routes, *device.routes,
            *registration.routes, static]


def create_app(settings: Settings, *, clock: Clock | None = None) -> Starlette:
    configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.log_format == "json":
            install_loop_handler()
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(routes=route_table(), lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(ResponseHeaders, ttl=float(settings.clients.cache_ttl))
    srv = settings.server
    app.add_middleware(RequestGuard, body_timeout=float(srv.body_timeout),
                       max_requests=srv.keep_alive_max_requests, max_age=float(srv.keep_alive_max_age))
    # outside the guard: the client address and request id hold for everything inside, the guard's
    # own answers (408, 503, the safety net's 500) included
    app.add_middleware(RequestContext, addresses=ClientAddress(settings.server.trusted_proxies,
                                                               settings.server.proxy_header),
                       access_log=runtime.access_log, audit=runtime.audit,
                       cert_header=settings.mtls.proxy_cert_header)
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` / granian: settings from OSTIARY_* and OSTIARY_CONFIG."""
    settings = load_settings()
    app = create_app(settings)
    with contextlib.suppress(ImportError):  # Uvicorn with httptools: limits on the request head (web/protocol.py)
        from .protocol import BoundedHttpToolsProtocol

        BoundedHttpToolsProtocol.configure(header_timeout=float(settings.server.header_timeout),
                                           max_header_bytes=settings.server.max_header_bytes)
    return app
