"""A circuit breaker for the Grad-CAM sidecar.

After `failures` consecutive failures the breaker opens: for `open_s` seconds callers
skip the sidecar at once instead of paying its timeout on every request. Then one
request probes it (half-open); success closes the breaker, failure opens it again.
`failures=0` disables the breaker (every request waits on the sidecar).

Single event loop only (no locks): all calls come from the API's asyncio loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 0 or open_s <= 0:
            raise ValueError("failures must be >= 0 and open_s > 0")
        self.threshold = failures
        self.open_s = open_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.times_opened = 0

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.open_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_in_s(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.open_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May this request call the sidecar? In half-open state only one probe at a time may."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._consecutive += 1
        was_probe = self._probing
        self._probing = False
        if not self.enabled:
            return
        if was_probe or (self._opened_at is None and self._consecutive >= self.threshold):
            self._opened_at = self._clock()
            self.times_opened += 1

    def release(self) -> None:
        """The allowed call ended with no verdict (cancelled): let another request probe."""
        self._probing = False
