"""The per-process compute pool: work leaves the event loop thread, errors come back, size is bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.api.compute import ComputePool


def test_runs_off_the_event_loop_thread_and_returns_the_value() -> None:
    pool = ComputePool(2)

    async def main() -> tuple[str, int]:
        return await pool.run(lambda a, b: (threading.current_thread().name, a + b), 2, 3)

    try:
        name, total = asyncio.run(main())
    finally:
        pool.shutdown()
    assert name.startswith("cxr-compute") and total == 5


def test_exception_reaches_the_caller_with_its_type() -> None:
    pool = ComputePool(1)

    def fail() -> None:
        raise KeyError("boom")

    try:
        with pytest.raises(KeyError):
            asyncio.run(pool.run(fail))
    finally:
        pool.shutdown()


def test_never_more_calls_at_once_than_threads() -> None:
    pool = ComputePool(2)
    running, peak, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def main() -> None:
        await asyncio.gather(*(pool.run(work) for _ in range(8)))

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert peak == 2


def test_zero_threads_is_refused() -> None:
    with pytest.raises(ValueError):
        ComputePool(0)
