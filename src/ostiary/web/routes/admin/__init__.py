"""The admin HTTP API under ``/admin/api``: the HTTP edge of the services in :mod:`ostiary.admin`.

``api`` holds the guard every admin route goes through (who may call, lock-out, audit, error mapping) and the
client and key routes; ``federation``, ``users`` and ``resources`` the rest; ``openapi`` describes them all.
"""

from __future__ import annotations

from . import api, federation, openapi, resources, users

__all__ = ["routes"]

routes = [*openapi.routes, *api.routes, *federation.routes, *users.routes, *resources.routes]
