"""The rate limiter in process memory: each worker enforces the limits on its own share of the traffic. Also the
fallback of the Redis limiter while Redis is unavailable (:mod:`ostiary.store.redis.ratelimit`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from cachetools import Cache, LFUCache

from ..core.ratelimit import Attempt, Bucket, Lockout, Refusal

__all__ = ["MemoryLimiter"]


class _Table:
    """At most ``size`` entries ``key → (value, expires_at)``. When full, expired entries go first, then the
    least used: a spray of new keys evicts its own kind, never a counter that has been hit again and again
    (clearing everything, or evicting the least *recently* used, would let a spray reset a lock-out)."""

    def __init__(self, size: int) -> None:
        self._data: LFUCache[str, tuple[Any, float]] = LFUCache(size)
        self._purged = -math.inf

    def get(self, key: str, now: float) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[1] <= now:
            del self._data[key]
            return None
        return hit[0]

    def set(self, key: str, value: Any, expires_at: float, now: float) -> None:
        if key not in self._data and len(self._data) >= self._data.maxsize and now - self._purged >= 1.0:
            self._purged = now  # at most one sweep a second (a sweep walks every entry)
            expired = [k for k in list(self._data) if Cache.__getitem__(self._data, k)[1] <= now]
            for k in expired:
                del self._data[k]
        self._data[key] = (value, expires_at)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def expires_at(self, key: str) -> float:
        hit = self._data.get(key)
        return hit[1] if hit is not None else 0.0

    def __len__(self) -> int:
        return len(self._data)


class MemoryLimiter:
    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = _Table(max_keys)  # key -> (tokens, at); expires when full again
        self._counts = _Table(max_keys)  # key -> count; expires ``window`` after the last failure
        self._now = clock

    def _take(self, key: str, rate: float, burst: int, now: float) -> float:
        """Take one token; 0 if allowed, else the seconds to wait."""
        tokens, last = self._buckets.get(key, now) or (float(burst), now)
        tokens = min(float(burst), tokens + (now - last) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets.set(key, (tokens, now), now + (burst - tokens) / rate, now)
        return wait

    async def failures(self, key: str) -> int:
        count: int = self._counts.get(key, self._now()) or 0
        return count

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        now = self._now()
        for step in steps:
            if isinstance(step, Bucket):
                wait = self._take(step.key, step.rate, step.burst, now)
                if wait:
                    return step.scope, wait
            elif (self._counts.get(step.key, now) or 0) >= step.max:
                return step.scope, float(step.window)
        return None

    def _count(self, key: str, window: int, now: float) -> int:
        count: int = (self._counts.get(key, now) or 0) + 1
        self._counts.set(key, count, now + window, now)
        return count

    async def record_failure(self, key: str, window: int) -> int:
        return self._count(key, window, self._now())

    def refusal(self, steps: Sequence[Attempt | Lockout]) -> Refusal | None:
        """The first counter at its maximum (nothing counted), or None."""
        now = self._now()
        for a in steps:
            if (self._counts.get(a.key, now) or 0) >= a.max:
                wait = self._counts.expires_at(a.key) - now if isinstance(a, Attempt) else a.window
                return a.scope, max(1.0, wait)
        return None

    def count(self, attempts: Sequence[Attempt]) -> None:
        now = self._now()
        for a in attempts:
            self._count(a.key, a.window, now)

    async def reserve(self, attempts: Sequence[Attempt]) -> Refusal | None:
        # no await between the check and the count: atomic within the event loop
        refused = self.refusal(attempts)
        if refused is None:
            self.count(attempts)
        return refused

    async def release(self, attempts: Sequence[Attempt]) -> None:
        now = self._now()
        for a in attempts:
            count = self._counts.get(a.key, now) or 0
            if count <= 1:
                self._counts.pop(a.key)
            else:
                self._counts.set(a.key, count - 1, self._counts.expires_at(a.key), now)

    async def close(self) -> None:
        return None
