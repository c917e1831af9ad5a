"""web/guard.py's ``within``: ``asyncio.timeout`` around an await, without the timer when the coroutine completes
at once (a request body that has already arrived). Timeouts, cancellations and results as ``asyncio.timeout``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ostiary.web import guard
from ostiary.web.guard import within


async def test_a_coroutine_that_completes_at_once_arms_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    arrived = asyncio.Event()
    arrived.set()

    async def ready() -> str:
        await arrived.wait()  # as Uvicorn's receive once the body is there: an await that does not suspend
        return "body"

    def no_timer(_: float) -> Any:
        raise AssertionError("a timer was armed")

    monkeypatch.setattr(guard.asyncio, "timeout", no_timer)
    assert await within(ready(), 1.0) == "body"


async def test_a_coroutine_that_waits_gets_its_results_and_raises_its_errors() -> None:
    loop = asyncio.get_running_loop()

    async def twice() -> int:
        first: asyncio.Future[int] = loop.create_future()
        loop.call_soon(first.set_result, 20)
        second: asyncio.Future[int] = loop.create_future()
        loop.call_later(0.01, second.set_result, 22)
        return await first + await second

    assert await within(twice(), 5.0) == 42

    async def fails() -> None:
        await asyncio.sleep(0.001)
        raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        await within(fails(), 5.0)

    async def fails_at_once() -> None:
        raise KeyError("first step")

    with pytest.raises(KeyError):
        await within(fails_at_once(), 5.0)

    future: asyncio.Future[str] = loop.create_future()  # not a coroutine: asyncio's own way
    loop.call_soon(future.set_result, "ok")
    assert await within(future, 5.0) == "ok"


async def test_a_coroutine_that_takes_too_long_is_cancelled_and_times_out() -> None:
    seen: list[str] = []

    async def stalled() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await within(stalled(), 0.05)
    assert seen == ["cancelled"]
    assert loop.time() - start < 5


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def stalled() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = asyncio.create_task(within(stalled(), 30.0))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
