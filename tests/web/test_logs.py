"""JSON logs: batched lines look exactly like the lines ``logging`` writes one by one, and records from other
libraries (Uvicorn, asyncio, warnings, uncaught exceptions) come out as one JSON object each."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

from ostiary.web import logs


def _capture(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    root = logging.getLogger()
    handler = logs._JsonHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    monkeypatch.setattr(root, "handlers", [handler])
    # as configure_logging leaves them, whatever an earlier test (an in-process Uvicorn, a dictConfig) did
    for name in ("ostiary", "ostiary.audit", "ostiary.access", "uvicorn", "uvicorn.error", "asyncio"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    _level(logging.INFO)
    return out


@pytest.fixture(autouse=True)
def _restore_level() -> Iterator[None]:
    root = logging.getLogger("ostiary")
    level = root.level
    yield
    root.setLevel(level)  # setLevel also clears the loggers' isEnabledFor caches


def _level(level: int) -> None:
    logging.getLogger("ostiary").setLevel(level)


def test_batched_lines_match_logging_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _capture(monkeypatch)
    log = logging.getLogger("ostiary.audit")
    detail = {"type": "token.issued", "client_id": "svc", "jti": "j1", "detail": {"scope": "api:read"}}
    log.info("token.issued", extra={"audit": detail})
    logs.write_events(log, [(1_800_000_000.12345, "token.issued", "audit", detail),
                            (1_800_000_001.0, "client.auth_failed", "audit", {"client_id": "svc"})])
    one, batched, second = (json.loads(line) for line in out.getvalue().splitlines())
    one.pop("ts")
    assert batched.pop("ts") == 1_800_000_000.123
    assert batched == one  # same keys and values as the logging path
    assert second["msg"] == "client.auth_failed" and second["level"] == "info"


def test_batched_lines_carry_the_request_id_they_were_emitted_under(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _capture(monkeypatch)
    log = logging.getLogger("ostiary.audit")
    token = logs.REQUEST_ID.set("r-1")
    try:
        log.info("token.issued", extra={"audit": {}})
    finally:
        logs.REQUEST_ID.reset(token)
    logs.write_events(log, [(0.0, "token.issued", "audit", {})], request_ids=["r-1"])
    one, batched = (json.loads(line) for line in out.getvalue().splitlines())
    assert one["request_id"] == batched["request_id"] == "r-1"
    one.pop("ts"), batched.pop("ts")
    assert one == batched


def test_line_buffer_writes_on_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _capture(monkeypatch)
    buf = logs.LineBuffer(logging.getLogger("ostiary.access"))
    buf.add("http.request", {"method": "GET", "path": "/jwks", "status": 200})
    assert out.getvalue() == ""
    buf.flush()
    (access,) = (json.loads(line) for line in out.getvalue().splitlines())
    assert access["logger"] == "ostiary.access" and access["path"] == "/jwks" and access["level"] == "info"


def test_batched_lines_respect_the_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _capture(monkeypatch)
    _level(logging.WARNING)
    logs.write_events(logging.getLogger("ostiary.audit"), [(0.0, "token.issued", "audit", {})])
    buf = logs.LineBuffer(logging.getLogger("ostiary.access"))
    buf.add("http.request", {})
    buf.flush()
    assert out.getvalue() == ""


def test_text_logs_fall_back_to_one_record_each(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(audit)s"))
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(logging.getLogger("ostiary"), "handlers", [])
    monkeypatch.setattr(logging.getLogger("ostiary"), "propagate", True)
    _level(logging.INFO)
    logs.write_events(logging.getLogger("ostiary.audit"), [(0.0, "token.issued", "audit", {"jti": "j1"})])
    assert out.getvalue() == "ostiary.audit token.issued {'jti': 'j1'}\n"


def test_foreign_records_are_json_with_the_traceback_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _capture(monkeypatch)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    try:
        raise ValueError("boom")
    except ValueError:
        logs._excepthook(*sys.exc_info())  # type: ignore[arg-type]

    async def failing() -> None:
        raise RuntimeError("never retrieved")

    async def main() -> None:
        logs.install_loop_handler()
        task = asyncio.get_running_loop().create_task(failing())
        await asyncio.sleep(0)
        logs._loop_exception_handler(asyncio.get_running_loop(), {
            "message": "Task exception was never retrieved", "exception": task.exception(), "future": task})

    asyncio.run(main())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["logger"], x["msg"]) for x in lines] == [
        ("uvicorn.error", "Invalid HTTP request received."), ("ostiary", "uncaught exception"),
        ("asyncio", "Task exception was never retrieved")]
    assert "ValueError: boom" in lines[1]["exc"] and lines[1]["level"] == "critical"
    assert "RuntimeError: never retrieved" in lines[2]["exc"] and "failing" in lines[2]["future"]


def test_configure_logging_routes_every_library_through_one_json_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.delattr(root, "_ostiary_configured", raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(root, "level", root.level)
    plain = logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(logging.getLogger("uvicorn.error"), "handlers", [plain])
    for name in ("ostiary", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "py.warnings"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", logging.getLogger(name).propagate)
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
        monkeypatch.setattr(logging.getLogger(name), "disabled", logging.getLogger(name).disabled)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    try:
        logs.configure_logging("info", "json")
        assert sys.excepthook is logs._excepthook
        logging.getLogger("uvicorn.error").info("Started server process [1]")
        logging.getLogger("ostiary.server").info("ready")
        logging.getLogger("asyncio").error("Task exception was never retrieved")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        del root._ostiary_configured  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [x["logger"] for x in lines] == ["uvicorn.error", "ostiary.server", "asyncio", "py.warnings"]
    assert "deprecated thing" in lines[3]["msg"]
    assert plain.stream.getvalue() == ""  # Uvicorn's own plain-text handler was removed
