"""Audit events: logged as JSON at once and written to the database in batches, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..core.models import AuditEvent
from ..core.storage import AuditRepository

__all__ = ["BatchingAuditSink"]

log = logging.getLogger("ostiary.audit")


class BatchingAuditSink:
    def __init__(self, repo: AuditRepository, *, interval: float = 0.5, max_batch: int = 250,
                 max_queue: int = 100_000) -> None:
        self._repo = repo
        self._interval = interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: list[AuditEvent] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.dropped = 0

    def emit(self, event: AuditEvent) -> None:
        log.info(event.type, extra={"audit": event.as_dict()})
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ostiary-audit")

    async def _run(self) -> None:
        # never cancelled: a cancellation in the middle of an insert would lose that batch
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self.flush()

    async def flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
            try:
                await self._repo.record_events(batch)
            except Exception:
                log.exception("could not write %d audit events; retrying at the next flush", len(batch))
                self._queue[:0] = batch
                return
            await asyncio.sleep(0)  # small batches, and requests in between: no long stall of the event loop

    async def stop(self) -> None:
        if self._task:
            self._stopping.set()
            await self._task
        await self.flush()
