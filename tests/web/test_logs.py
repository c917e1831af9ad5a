"""Audit lines written in batches look exactly like the lines ``logging`` writes one by one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ostiary.web import logs


def _capture(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    root = logging.getLogger("ostiary")
    handler = logs._JsonHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    monkeypatch.setattr(root, "handlers", [handler])
    _level(monkeypatch, logging.INFO)
    return out


@pytest.fixture(autouse=True)
def _restore_level() -> Iterator[None]:
    root = logging.getLogger("ostiary")
    level = root.level
    yield
    root.setLevel(level)  # setLevel also clears the loggers' isEnabledFor caches


def _level(monkeypatch, level: int) -> None:
    logging.getLogger("ostiary").setLevel(level)


def test_batched_lines_match_logging_lines(monkeypatch) -> None:
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


def test_batched_lines_respect_the_log_level(monkeypatch) -> None:
    out = _capture(monkeypatch)
    _level(monkeypatch, logging.WARNING)
    logs.write_events(logging.getLogger("ostiary.audit"), [(0.0, "token.issued", "audit", {})])
    assert out.getvalue() == ""


def test_text_logs_fall_back_to_one_record_each(monkeypatch) -> None:
    out = io.StringIO()
    root = logging.getLogger("ostiary")
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(audit)s"))
    monkeypatch.setattr(root, "handlers", [handler])
    _level(monkeypatch, logging.INFO)
    logs.write_events(logging.getLogger("ostiary.audit"), [(0.0, "token.issued", "audit", {"jti": "j1"})])
    assert out.getvalue() == "ostiary.audit token.issued {'jti': 'j1'}\n"
