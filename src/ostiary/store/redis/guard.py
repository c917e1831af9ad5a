"""One Redis connection per process, behind short timeouts and a circuit breaker.

Redis holds only ephemeral state (rate-limit counters, device poll timing), and every user of it has an
in-process fallback. So a Redis that is down or hung must cost a request at most one short timeout: after a
failure the breaker opens and every call goes straight to the fallback for ``retry_interval`` seconds; then one
call (a request, or ``/readyz``) probes Redis again while the others keep using the fallback. A success closes
the breaker.

(pybreaker, the usual library, has no asyncio support outside Tornado; the state machine is a few lines.)

Each fallback is reported to ``on_fallback(component)``: the server counts it in ``ostiary_redis_fallback_total``
(``web/runtime.py`` wires the metric; the store knows no metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["RedisGuard", "RedisUnavailable"]

log = logging.getLogger("ostiary.redis")

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis did not answer (or the breaker is open): use the fallback."""


class RedisGuard:
    def __init__(self, url: str, *, timeout: float = 0.5, retry_interval: float = 5.0,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # no retries inside redis-py: they would multiply the timeout (redis-py ≥ 6 retries 3 times by default)
        self.redis: Any = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._on_fallback = on_fallback or _ignore
        self._open_until = 0.0  # 0: closed (Redis in use)
        self._probing = False
        self._closed = False

    @property
    def available(self) -> bool:
        """False while the breaker is open (the fallbacks answer)."""
        return self._open_until == 0.0

    async def run(self, op: Callable[[Any], Awaitable[T]], component: str) -> T:
        """``op(redis)``, or :class:`RedisUnavailable` (reported to ``on_fallback``)."""
        if self._open_until:
            if time.monotonic() < self._open_until or self._probing:
                self._on_fallback(component)
                raise RedisUnavailable
            self._probing = True  # half open: this call tries Redis
        try:
            # belt and braces over redis-py's socket timeouts (connect + one command)
            async with asyncio.timeout(self._timeout * 3):
                result = await op(self.redis)
        except Exception as e:
            self._trip(e)
            self._on_fallback(component)
            raise RedisUnavailable from e
        if self._open_until:
            log.warning("Redis is back; shared limits and poll timing are in use again")
        self._open_until = 0.0
        self._probing = False
        return result

    def _trip(self, error: Exception) -> None:
        if not self._open_until:
            log.error("Redis unavailable (%s); falling back to per-process limits and poll timing, retrying "
                      "every %.0f s", type(error).__name__, self._retry_interval)
        self._open_until = time.monotonic() + self._retry_interval
        self._probing = False

    async def ping(self) -> bool:
        try:
            return bool(await self.run(lambda r: r.ping(), "readyz"))
        except RedisUnavailable:
            return False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.redis.aclose()


def _ignore(component: str) -> None:
    return None
