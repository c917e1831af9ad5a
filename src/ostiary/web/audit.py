"""Audit events: logged as JSON lines and written to the database, off the request path (or, with
``audit.durability = "sync"``, the row before the response).

``emit`` first bounds every field to what the ``audit_events`` table holds (an ``ip`` that is not an IP address
is dropped, strings are cut to their column's length, the ``detail`` JSON is capped), so no request can make
an event the database refuses. Then it appends the event to two lists:

- log lines: written every ``interval`` (0.2 s) by their own timer, whatever the database does;
- rows: written every ``interval`` in transactions of ``max_batch`` rows. A batch the database *refuses*
  is split in halves until the refused event is found: that one is set aside (a log line with the reason,
  ``ostiary_audit_events_dropped_total{reason="rejected"}``), the others are written. A batch that fails because
  the database is unreachable (``StoreUnavailable``) stays at the head of the queue and is retried.

``durability``: ``"batched"`` (default): a ``kill -9`` loses at most the rows of the last interval and of the
batch being written, and the log lines of the last interval. ``"sync"``: ``web.request_context`` writes the
request's events before the response starts; when that fails the client gets 503 and the events are queued.
SIGTERM flushes everything before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any, Literal

import orjson

from ..core.audit import AuditEvent, AuditEventsRejected, AuditRepository
from ..core.errors import StoreUnavailable
from . import metrics
from .logs import LineBuffer, write_events
from .request_context import current_request

__all__ = ["DETAIL_MAX_BYTES", "BatchingAuditSink", "bounded"]

log = logging.getLogger("ostiary.audit")

#: Column lengths of ``audit_events`` (store/sql/tables.py; a test checks they agree).
LIMITS = {"type": 64, "client_id": 256, "subject": 256, "grant_type": 100, "jti": 64}
#: Largest ``detail`` kept, as JSON; a larger one is replaced by a note of its size.
DETAIL_MAX_BYTES = 4096
_OUTCOMES = ("success", "failure")


def _text(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if len(value) <= limit and value.isascii() and "\x00" not in value:
        return value
    # no NUL, no lone surrogate: text PostgreSQL and SQLite both store
    value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return value[:limit]


def _ip(value: str | None) -> str | None:
    return None if value is None else _valid_ip(value)


@functools.lru_cache(maxsize=4096)  # a client's address repeats from request to request
def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _clean(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return None
    if isinstance(value, str):
        return _text(value, DETAIL_MAX_BYTES)
    if isinstance(value, dict):
        return {_text(str(k), 200): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(str(value), DETAIL_MAX_BYTES)


def _detail(detail: Any) -> dict[str, Any]:
    try:
        data = orjson.dumps(detail, option=orjson.OPT_NON_STR_KEYS)
        clean = dict(detail) if b"\\u0000" not in data else _clean(dict(detail))
    except (TypeError, ValueError):  # lone surrogates, objects orjson cannot write
        clean = _clean(dict(detail))
        data = orjson.dumps(clean, default=str, option=orjson.OPT_NON_STR_KEYS)
    if len(data) > DETAIL_MAX_BYTES:
        return {"truncated": True, "bytes": len(data)}
    return clean


def bounded(event: AuditEvent) -> AuditEvent:
    """The event with every field valid for the ``audit_events`` table (see the module docstring)."""
    # the constructor, not dataclasses.replace (which looks the fields up again on every call): every field
    # of AuditEvent is named here (a test checks that no field is left out)
    return AuditEvent(
        type=_text(event.type, LIMITS["type"]) or "unknown",
        outcome=event.outcome if event.outcome in _OUTCOMES else "failure", at=event.at,
        client_id=_text(event.client_id, LIMITS["client_id"]), subject=_text(event.subject, LIMITS["subject"]),
        grant_type=_text(event.grant_type, LIMITS["grant_type"]), jti=_text(event.jti, LIMITS["jti"]),
        ip=_ip(event.ip), detail=_detail(event.detail))


class BatchingAuditSink:
    def __init__(self, repo: AuditRepository, *, durability: Literal["batched", "sync"] = "batched",
                 interval: float = 0.2, max_batch: int = 250, max_queue: int = 100_000,
                 access_log: LineBuffer | None = None) -> None:
        self._repo = repo
        self.durability = durability
        self._interval = interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: list[AuditEvent] = []
        self._unlogged: list[tuple[AuditEvent, str | None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._access_log = access_log
        self._sync_waiting: list[tuple[list[AuditEvent], asyncio.Future[bool]]] = []
        self._sync_writer: asyncio.Task[None] | None = None
        self.dropped = 0

    def emit(self, event: AuditEvent) -> None:
        event = bounded(event)
        state = current_request()
        if len(self._unlogged) < self._max_queue:
            self._unlogged.append((event, state.request_id if state else None))
        if state is not None:
            if state.client_id is None:
                state.client_id = event.client_id
            if state.audit_pending is not None:  # sync: written by web.request_context before the response
                state.audit_pending.append(event)
                return
        self.enqueue([event])

    def enqueue(self, events: Sequence[AuditEvent]) -> None:
        room = self._max_queue - len(self._queue)
        if room < len(events):
            lost = len(events) - max(room, 0)
            self.dropped += lost
            metrics.audit_dropped("queue_full", lost)
            events = events[:max(room, 0)]
        self._queue.extend(events)

    def write_log(self) -> None:
        if self._unlogged:
            items, self._unlogged = self._unlogged, []
            write_events(log, [(e.at, e.type, "audit", e.as_dict()) for e, _ in items],
                         request_ids=[rid for _, rid in items])
        if self._access_log is not None:
            self._access_log.flush()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._log_loop(), name="ostiary-audit-log"),
                       asyncio.create_task(self._db_loop(), name="ostiary-audit")]

    async def _tick(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _log_loop(self) -> None:
        """Log lines on their own timer: a database that hangs does not hold them back."""
        while not self._stopping.is_set():
            await self._tick()
            self.write_log()

    async def _db_loop(self) -> None:
        # never cancelled: a cancellation in the middle of an insert would lose that batch
        while not self._stopping.is_set():
            await self._tick()
            await self.flush_rows()

    async def write_now(self, events: Sequence[AuditEvent]) -> bool:
        """``durability = "sync"``: write these rows before returning. False (and the events queued for a
        retry) when the database cannot be reached.

        Group commit: the rows of every request waiting meanwhile go in one transaction, so concurrent
        requests share one commit (one WAL flush) instead of queueing for a commit each."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._sync_waiting.append((list(events), done))
        if self._sync_writer is None or self._sync_writer.done():
            self._sync_writer = asyncio.create_task(self._write_sync(), name="ostiary-audit-sync")
        return await asyncio.shield(done)  # a cancelled request must not cancel the others' commit

    async def _write_sync(self) -> None:
        while self._sync_waiting:
            waiting, self._sync_waiting = self._sync_waiting, []
            rest = await self._write([e for events, _ in waiting for e in events])
            unwritten = {id(e) for e in rest}
            for events, done in waiting:
                failed = [e for e in events if id(e) in unwritten]
                if failed:
                    self.enqueue(failed)
                if not done.done():
                    done.set_result(not failed)

    async def _write(self, batch: list[AuditEvent]) -> list[AuditEvent]:
        """Write ``batch``, setting aside the events the store refuses; returns what could not be written
        because the store cannot be reached (to retry), empty when everything was written or set aside.

        Any failure other than ``StoreUnavailable`` is about the statement, so about some event in it (the
        store names a refused value ``AuditEventsRejected``): retrying the same batch could only fail again
        and hold up every event behind it."""
        try:
            await self._repo.record_events(batch)
        except StoreUnavailable:  # the store logs the outage once per transition; the events wait
            return batch
        except Exception as exc:
            if len(batch) == 1:
                self._set_aside(batch[0], exc)
                return []
            mid = len(batch) // 2
            rest = await self._write(batch[:mid])
            if rest:
                return rest + batch[mid:]
            return await self._write(batch[mid:])
        return []

    def _set_aside(self, event: AuditEvent, exc: Exception) -> None:
        self.dropped += 1
        metrics.audit_dropped("rejected")
        reason = str(exc) if isinstance(exc, AuditEventsRejected) else f"{type(exc).__name__}: {exc}"
        log.error("audit event refused by the database; set aside", extra={"reason": reason[:300],
                                                                          "audit": event.as_dict()})

    async def flush_rows(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
            rest = await self._write(batch)
            if rest:
                self._queue[:0] = rest
                return
            await asyncio.sleep(0)  # small batches, and requests in between: no long stall of the event loop

    async def flush(self) -> None:
        self.write_log()
        await self.flush_rows()

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            await task
        await self.flush()
        if self._queue:
            log.error("audit events not written at exit (their log lines were)", extra={"lost": len(self._queue)})
