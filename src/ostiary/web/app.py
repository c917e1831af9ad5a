"""``create_app(settings)``: the ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._clock import Clock
from ..config import Settings, load_settings
from .cors import Cors
from .logs import configure_logging
from .runtime import Runtime
from .user_routes import user_routes

__all__ = ["app_from_env", "create_app"]

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]


class SecurityHeaders:
    """Pure ASGI middleware adding security headers to every response (pages override CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, *, clock: Clock | None = None) -> Starlette:
    from ..admin.api import routes as admin_routes
    from ..admin.federation_api import routes as federation_routes
    from .routes.device import routes as device_routes
    from .routes.oauth import routes as oauth_routes

    configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(routes=[*oauth_routes, *admin_routes, *federation_routes, *user_routes(), *device_routes],
                    lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Cors, ttl=float(settings.clients.cache_ttl))
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` / granian: settings from OSTIARY_* and OSTIARY_CONFIG."""
    return create_app(load_settings())
