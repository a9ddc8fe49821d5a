"""The per-process compute pool (work leaves the event loop thread, errors come back, size is bounded)
and its size: the usable cores, the cgroup CPU quota capping the affinity mask."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from app.api import compute as cpus
from app.api import config as config_module
from app.api.compute import ComputePool
from app.api.config import Settings


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


def test_idle_only_while_nothing_is_awaited() -> None:
    """`idle` (the engine's cue to use every core for a call) is false from the moment a call is awaited
    until it returns, also as seen from the worker thread, and true again afterwards, failures included."""
    pool = ComputePool(2)
    seen_inside: list[bool] = []

    def fail() -> None:
        raise KeyError("boom")

    async def main() -> tuple[bool, bool, bool]:
        before = pool.idle
        await pool.run(lambda: seen_inside.append(pool.idle))
        after_one = pool.idle
        with pytest.raises(KeyError):
            await pool.run(fail)
        return before, after_one, pool.idle

    try:
        assert asyncio.run(main()) == (True, True, True)
    finally:
        pool.shutdown()
    assert seen_inside == [False]


def test_zero_threads_is_refused() -> None:
    with pytest.raises(ValueError):
        ComputePool(0)


# --- usable cores: the cgroup CPU quota caps the affinity mask ---


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1),
    ("garbage\n", None),
])
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert cpus.cgroup_cpu_limit(tmp_path) == expected


@pytest.mark.parametrize(("quota", "expected"), [("-1", None), ("300000", 3)])
def test_cgroup_v1_quota(tmp_path: Path, quota: str, expected: int | None) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpus.cgroup_cpu_limit(tmp_path) == expected


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cpus.cgroup_cpu_limit(tmp_path) is None


def test_usable_cores_is_capped_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: set(range(64)))
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: 4)
    assert cpus.usable_cores() == 4
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: None)
    assert cpus.usable_cores() == 64


@pytest.mark.parametrize(("cores", "workers", "pool"), [(2, 0, 2), (1, 0, 1), (64, 0, 2), (8, 2, 8), (8, 1, 8)])
def test_default_workers_and_pool(monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, pool: int) -> None:
    monkeypatch.setattr(config_module, "usable_cores", lambda: cores)
    settings = Settings(workers=workers)
    assert settings.worker_count == (workers or cores)
    assert settings.compute_pool_size == pool
    assert Settings(workers=workers, compute_threads=3).compute_pool_size == 3


@pytest.mark.parametrize(("cores", "alone", "expected"), [(2, 0, 2), (64, 0, 64), (2, 1, 1), (1, 0, 1)])
def test_alone_ort_threads_default_to_the_usable_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, alone: int, expected: int,
) -> None:
    monkeypatch.setattr(config_module, "usable_cores", lambda: cores)
    assert Settings(ort_threads_alone=alone).alone_ort_threads == expected
