"""Where the CPU work of a request runs: a small thread pool per API process, sized to the usable cores.

Decoding, preprocessing and onnxruntime release the GIL, so threads overlap them; but
more threads than cores only adds switching (and, in a VM, cross-CPU wake-ups), so the
pool is sized to the cores this process owns. `loop.run_in_executor` is used directly:
it costs the event loop less per call than anyio's `to_thread` (no capacity limiter,
no cancel scope), and /predict makes one or two such calls per request.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ComputePool:
    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("a compute pool needs at least one thread")
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="cxr-compute")
        self._pending = 0  # calls awaited and not yet returned; changed on the event loop thread only

    @property
    def idle(self) -> bool:
        """Nothing is running or queued: work submitted now has this process's cores to itself."""
        return self._pending == 0

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` in the pool; the awaiting request waits, the event loop does not."""
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self._pending -= 1

    def shutdown(self) -> None:
        """Finish what is running, drop what is queued (called at shutdown, after the last request)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


# How many CPUs this process may really use: the affinity mask, capped by a cgroup CPU quota.
# A container started with `--cpus 2` on a 64-core host still sees 64 CPUs in its affinity
# mask; only the cgroup's quota says 2. Sizing workers and pools from the mask alone would
# start 64 API processes there.
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> int | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, else v1 `cfs_quota_us`), rounded up; None if unlimited."""
    try:
        quota_text, period_text = (root / "cpu.max").read_text().split()[:2]
        if quota_text == "max":
            return None
        quota, period = int(quota_text), int(period_text)
    except (OSError, ValueError):
        try:
            quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)
