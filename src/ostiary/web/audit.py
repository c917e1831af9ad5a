"""Audit events: logged as JSON lines and written to the database, both in batches off the request path.

A request only appends its event to two lists. Every ``interval`` (0.2 s) the batch is written to the log with one
write, then to the database in transactions of ``max_batch`` rows. A batch the database refuses is kept and
retried (its log lines are not written twice); SIGTERM flushes everything before the process exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..core.errors import StoreUnavailable
from ..core.models import AuditEvent
from ..core.storage import AuditRepository
from .logs import write_events

__all__ = ["BatchingAuditSink"]

log = logging.getLogger("ostiary.audit")


class BatchingAuditSink:
    def __init__(self, repo: AuditRepository, *, interval: float = 0.2, max_batch: int = 250,
                 max_queue: int = 100_000) -> None:
        self._repo = repo
        self._interval = interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: list[AuditEvent] = []
        self._unlogged: list[AuditEvent] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.dropped = 0

    def emit(self, event: AuditEvent) -> None:
        if len(self._unlogged) < self._max_queue:
            self._unlogged.append(event)
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(event)

    def _write_log(self) -> None:
        if self._unlogged:
            events, self._unlogged = self._unlogged, []
            write_events(log, [(e.at, e.type, "audit", e.as_dict()) for e in events])

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ostiary-audit")

    async def _run(self) -> None:
        # never cancelled: a cancellation in the middle of an insert would lose that batch
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self.flush()

    async def flush(self) -> None:
        self._write_log()
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
            try:
                await self._repo.record_events(batch)
            except StoreUnavailable:  # the store logged the outage once; keep the events for the next flush
                self._queue[:0] = batch
                return
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
