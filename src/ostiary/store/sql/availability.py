"""Database outages as one typed error, :class:`~ostiary.core.errors.StoreUnavailable`, logged once per
transition ("database unavailable" / "database available again") per process instead of once per request.

Which errors mean "the database cannot be reached" rather than "this statement is wrong":
SQLAlchemy's ``OperationalError`` and ``InterfaceError``, any driver error that invalidated its connection
(the server closed it: ``pg_terminate_backend``, a restart, a network cut), pool and connect timeouts,
socket errors, and the PostgreSQL SQLSTATEs of a refused connection (class 08 connection exception, 53
insufficient resources, 57P0x shutdown, 3D000 no such database, 55000 "not accepting connections", 28 bad
credentials). Everything else (an ``IntegrityError``, a bug) keeps its own type.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from ...core.errors import StoreUnavailable

__all__ = ["Availability", "guard_unavailable", "unavailable_cause"]

log = logging.getLogger("ostiary.store")

_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "3D000", "55000", "28")

T = TypeVar("T")


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (getattr(exc, "orig", None), exc.__cause__, exc):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def unavailable_cause(exc: BaseException) -> str | None:
    """A short cause (error class, SQLSTATE) if ``exc`` means the database cannot be reached, else None."""
    if isinstance(exc, StoreUnavailable):
        return exc.cause
    state = _sqlstate(exc)
    name = type(exc).__name__
    if isinstance(exc, sa_exc.TimeoutError):
        return "connection pool timeout"
    if isinstance(exc, sa_exc.DBAPIError):
        orig = type(exc.orig).__name__ if exc.orig is not None else name
        if exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return f"{orig}" + (f" (SQLSTATE {state})" if state else "")
        if state and state.startswith(_UNAVAILABLE_SQLSTATES):
            return f"{orig} (SQLSTATE {state})"
        return None
    if isinstance(exc, (OSError, TimeoutError)):  # refused, unreachable, connect timeout (asyncio too)
        return name
    if state and state.startswith(_UNAVAILABLE_SQLSTATES):
        return f"{name} (SQLSTATE {state})"
    return None


class Availability:
    """Up or down, as the last store operation found it; logs each transition once.

    An operation may flip the state only if no other operation flipped it since it started: a slow query that
    began before an outage and succeeds after it was noticed does not announce a recovery (nor does one that
    began during the outage and fails after the recovery announce a new outage)."""

    def __init__(self) -> None:
        self.up = True
        self.epoch = 0

    def failed(self, epoch: int, cause: str) -> None:
        if self.up and epoch == self.epoch:
            self.up = False
            self.epoch += 1
            log.error("database unavailable", extra={"cause": cause, "pid": os.getpid()})

    def succeeded(self, epoch: int) -> None:
        if not self.up and epoch == self.epoch:
            self.up = True
            self.epoch += 1
            log.warning("database available again", extra={"pid": os.getpid()})


def _guard(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def guarded(self: Any, *args: Any, **kwargs: Any) -> T:
        availability: Availability = self.availability
        epoch = availability.epoch
        try:
            result = await fn(self, *args, **kwargs)
        except Exception as exc:
            cause = unavailable_cause(exc)
            if cause is None:
                raise
            availability.failed(epoch, cause)
            raise StoreUnavailable(cause) from None
        if not availability.up:
            availability.succeeded(epoch)
        return result

    return guarded


C = TypeVar("C", bound=type)


def guard_unavailable(cls: C) -> C:
    """Class decorator: every public coroutine method of ``cls`` (and its mixins) raises ``StoreUnavailable``
    instead of a driver error when the database cannot be reached. The instance needs an ``availability``."""
    for name in dir(cls):
        if name.startswith("_") or name == "close":
            continue
        attr = inspect.getattr_static(cls, name)
        if inspect.iscoroutinefunction(attr):
            setattr(cls, name, _guard(attr))
    return cls
