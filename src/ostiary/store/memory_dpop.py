"""The DPoP replay cache (RFC 9449 §11.1) in process memory: the single-process default, and what a Redis-backed
cache falls back to while Redis is unavailable (each process then refuses the replays it sees)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

__all__ = ["MemoryDPoPReplayCache"]


class MemoryDPoPReplayCache:
    """``seen_first`` over a dict of ``key -> until``, expired entries dropped as time passes. Bounded: when
    ``max_keys`` live proofs are held, the ones that expire soonest go first (a proof ids' window is a minute, so
    the default holds over 16,000 proofs a second)."""

    def __init__(self, max_keys: int = 1_000_000, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._max = max_keys
        self._clock = clock

    async def seen_first(self, key: str, until: float) -> bool:
        now = self._clock()
        self._expire(now)
        known = self._until.get(key)
        if known is not None and known > now:
            return False
        while len(self._until) >= self._max and self._heap:
            _, old = heapq.heappop(self._heap)
            self._until.pop(old, None)
        self._until[key] = until
        heapq.heappush(self._heap, (until, key))
        return True

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if self._until.get(key) == at:
                del self._until[key]

    def __len__(self) -> int:
        return len(self._until)
