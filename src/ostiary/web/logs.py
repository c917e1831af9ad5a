"""Structured JSON logs. Nothing here ever receives a token or secret value.

With ``log_format = "json"`` every line the process writes is one JSON object: Ostiary's loggers, Uvicorn's
(``uvicorn``, ``uvicorn.error``, ``uvicorn.access``), asyncio's ("Task exception was never retrieved"),
``warnings``, and exceptions nobody caught (``sys.excepthook``, ``threading.excepthook``, the event loop's
exception handler) all go through one handler on the root logger; a traceback is a field of its line
(``exc``), never lines of its own. A line written while a request is handled carries its ``request_id``.

The formatter is ours rather than python-json-logger's: measured on one record with five extra fields it
formats in 2.5 µs against 4.7 µs for python-json-logger's orjson formatter (12 µs for its json one), and the
batched writers below must produce exactly the same lines without a ``LogRecord`` per line, which
``line()`` shares with the formatter."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import orjson

__all__ = ["REQUEST_ID", "JsonFormatter", "LineBuffer", "configure_logging", "install_loop_handler", "line",
           "write_events"]

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}

#: The id of the request being handled (set by ``web.request_context``); added to every line logged meanwhile.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("ostiary_request_id", default=None)


def line(created: float, level: str, logger: str, msg: str, fields: dict[str, Any]) -> bytes:
    """One JSON log line (with its newline): the same keys whether it comes from ``logging`` or a batch."""
    out: dict[str, Any] = {"ts": round(created, 3), "level": level, "logger": logger, "msg": msg}
    out.update(fields)
    return orjson.dumps(out, default=str) + b"\n"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {}
        rid = REQUEST_ID.get()
        if rid is not None:
            fields["request_id"] = rid
        for k, v in vars(record).items():
            if k not in _RESERVED and not k.startswith("_"):
                fields[k] = v
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc_type"] = record.exc_info[0].__name__
            fields["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = record.stack_info
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string in someone's log call must still give a line
            msg = str(record.msg)
        return line(record.created, record.levelname.lower(), record.name, msg, fields)[:-1].decode()


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The JSON handler; ``write_events`` and ``LineBuffer`` write batches of lines through it at once."""


def _json_handler(logger: logging.Logger) -> _JsonHandler | None:
    """The JSON handler when ``logger``'s lines may bypass ``logging`` (nothing else would see them)."""
    root = logging.getLogger()
    handlers = root.handlers
    if len(handlers) != 1 or type(handlers[0]) is not _JsonHandler or root.filters or logger.filters:
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    return handlers[0]


def _write(handler: logging.Handler, text: bytes) -> None:
    assert isinstance(handler, logging.StreamHandler)
    handler.acquire()
    try:
        handler.stream.write(text.decode())
        handler.flush()
    except Exception:  # as logging does: a broken log stream must not break the server
        handler.handleError(logging.makeLogRecord({"msg": "log write failed"}))
    finally:
        handler.release()


def write_events(logger: logging.Logger, events: Iterable[tuple[float, str, str, dict[str, Any]]],
                 *, request_ids: Iterable[str | None] | None = None) -> None:
    """Log many ``(created, message, extra key, extra value)`` records at INFO: the same JSON lines as
    ``logger.info(message, extra={key: value})`` each, but formatted by ``orjson`` and written at once.

    For hot paths (one audit event per issued token): a ``logging`` record per event cost about a tenth of
    the token endpoint's CPU. Falls back to ``logger.info`` per record for text logs or foreign handlers."""
    events = list(events)
    if not events or not logger.isEnabledFor(logging.INFO):
        return
    rids = list(request_ids) if request_ids is not None else [None] * len(events)
    handler = _json_handler(logger)
    if handler is None:
        for (_, msg, key, value), rid in zip(events, rids, strict=True):
            token = REQUEST_ID.set(rid) if rid is not None else None
            try:
                logger.info(msg, extra={key: value})
            finally:
                if token is not None:
                    REQUEST_ID.reset(token)
        return
    name = logger.name
    _write(handler, b"".join(line(created, "info", name, msg, {"request_id": rid, key: value} if rid else
                                  {key: value}) for (created, msg, key, value), rid in zip(events, rids, strict=True)))


class LineBuffer:
    """INFO lines of one logger kept in memory and written together by ``flush()``, which the server calls
    on its own 0.2 s timer (see ``web.audit``): for lines written once per request (the access log), so a
    request costs no ``write`` system call. A killed process loses at most the lines of one interval."""

    def __init__(self, logger: logging.Logger, *, max_lines: int = 10_000) -> None:
        self.logger = logger
        self._lines: list[tuple[float, str, dict[str, Any]]] = []
        self._max = max_lines

    def add(self, msg: str, fields: dict[str, Any]) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        if _json_handler(self.logger) is None:  # text logs: as logging does, one record now
            self.logger.info(msg, extra=fields)
            return
        self._lines.append((time.time(), msg, fields))
        if len(self._lines) >= self._max:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        handler = _json_handler(self.logger)
        if handler is None:
            for _, msg, fields in lines:
                self.logger.info(msg, extra=fields)
            return
        name = self.logger.name
        _write(handler, b"".join(line(created, "info", name, msg, fields) for created, msg, fields in lines))


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("ostiary").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else None
    logging.getLogger("ostiary").error("uncaught exception in thread", extra={"thread_name": name},
                                       exc_info=(args.exc_type, args.exc_value or args.exc_type(),
                                                 args.exc_traceback))


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own messages ("Task exception was never retrieved", …) as one JSON line with the traceback."""
    exc = context.get("exception")
    fields: dict[str, Any] = {}
    for key in ("task", "future", "handle"):
        if key in context:
            fields[key] = repr(context[key])[:500]
    logging.getLogger("asyncio").error(
        context.get("message") or "unhandled exception in event loop", extra=fields,
        exc_info=(type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None)


def install_loop_handler() -> None:
    """Route the running loop's unhandled exceptions through the JSON logs (called at application start)."""
    asyncio.get_running_loop().set_exception_handler(_loop_exception_handler)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """One handler on the root logger, so every library's records come out in the same format."""
    root = logging.getLogger()
    if getattr(root, "_ostiary_configured", False):
        return
    handler: logging.Handler
    if fmt == "json":
        handler = _JsonHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook
        logging.captureWarnings(False)  # if someone captured warnings before us, take them over anew
        logging.captureWarnings(True)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and errors
    ours = level.upper()
    for name in ("ostiary", "uvicorn", "uvicorn.error", "_granian", "granian"):
        logging.getLogger(name).setLevel(ours)
    for name in ("ostiary", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "_granian", "granian",
                 "granian.access", "py.warnings"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):  # Uvicorn or Granian may have configured their own plain-text handlers
            lg.removeHandler(h)
        lg.propagate = True
        lg.disabled = False  # a dictConfig(disable_existing_loggers=True) elsewhere must not silence them
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # Ostiary writes its own access log
    root._ostiary_configured = True  # type: ignore[attr-defined]
    # the server never logs file/line, thread or process names: skip collecting them on every record
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.Formatter.converter = time.gmtime


def server_log_dictconfig(level: str, fmt: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` for processes Ostiary does not start itself (Granian's main process)."""
    formatter = {"()": "ostiary.web.logs.JsonFormatter"} if fmt == "json" else {
        "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"default": formatter},
            "handlers": {"default": {"class": "ostiary.web.logs._JsonHandler" if fmt == "json" else
                                     "logging.StreamHandler", "formatter": "default",
                                     "stream": "ext://sys.stderr"}},
            "root": {"handlers": ["default"], "level": "WARNING"},
            "loggers": {name: {"level": level.upper(), "propagate": True, "handlers": []}
                        for name in ("_granian", "granian", "ostiary")}}
