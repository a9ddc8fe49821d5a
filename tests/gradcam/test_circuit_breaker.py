"""The circuit breaker that keeps /predict from waiting on a failing sidecar."""

from __future__ import annotations

from app.gradcam.circuit_breaker import BreakerState, CircuitBreaker


def test_breaker_opens_after_consecutive_failures_then_probes_once() -> None:
    now = [0.0]
    breaker = CircuitBreaker(3, 10.0, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    now[0] = 10.5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.times_opened == 2
    now[0] = 21.0
    assert breaker.allow()
    breaker.release()  # a cancelled probe lets the next request probe
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_breaker_threshold_zero_never_opens() -> None:
    breaker = CircuitBreaker(0, 1.0)
    for _ in range(50):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
