"""The routes of the code flow, sign-in and account pages, user admin, and static files: registered by
``create_app`` in one place."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

__all__ = ["user_routes"]


def user_routes() -> list[BaseRoute]:
    from ..admin.users_api import routes as users_api
    from .routes.account import routes as account
    from .routes.authorize import routes as authorize
    from .routes.userinfo import routes as userinfo

    static = Mount("/static", app=StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    return [*authorize, *account, *userinfo, *users_api, static]
