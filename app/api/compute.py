"""Where the CPU work of a request runs: a small thread pool per API process.

Decoding, preprocessing and onnxruntime release the GIL, so threads overlap them; but
more threads than cores only adds switching (and, in a VM, cross-CPU wake-ups), so the
pool is sized to the cores this process owns. `loop.run_in_executor` is used directly:
it costs the event loop less per call than anyio's `to_thread` (no capacity limiter,
no cancel scope), and /predict makes one or two such calls per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ComputePool:
    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("a compute pool needs at least one thread")
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="cxr-compute")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` in the pool; the awaiting request waits, the event loop does not."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def shutdown(self) -> None:
        """Finish what is running, drop what is queued (called at shutdown, after the last request)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
