"""Faults under load: /predict with Grad-CAM at steady concurrency while the sidecar is
killed, left down, restarted and made slow. Not one /predict may fail.

Real processes on free localhost ports: the sidecar, a delaying TCP proxy in front of it
(the "slow" fault), and the API. A second API with the circuit breaker disabled measures
what the outage costs without it. Figures go to test-artifacts/fault_load.json.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.faults import DelayProxy, LoadDriver, Outcome, p99
from tests.serving import FIXTURE_JPEGS, free_port, serving_env, start_api, start_uvicorn, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TIMEOUT_S = 1.5  # the API's Grad-CAM deadline
SLOW_S = 3.0  # the injected sidecar delay, well over the deadline
OPEN_S = 2.0  # how long the breaker stays open
FAILURES = 3
PHASE_S = 4.0


def _in(outcomes: list[Outcome], phase: str) -> list[Outcome]:
    return [o for o in outcomes if o.phase == phase]


def _api(port: int, proxy: DelayProxy, model_dir: Path, log: Path, failures: int) -> subprocess.Popen:
    env = serving_env(CXR_MODEL_DIR=str(model_dir), CXR_GRADCAM_URL=f"http://127.0.0.1:{proxy.port}",
                      CXR_GRADCAM_TIMEOUT_S=str(TIMEOUT_S), CXR_GRADCAM_BREAKER_FAILURES=str(failures),
                      CXR_GRADCAM_BREAKER_OPEN_S=str(OPEN_S), CXR_LOG_LEVEL="WARNING")
    return start_api(port, env, log)


def _degraded(outcome: Outcome) -> bool:
    return not outcome.overlay and any("gradcam_overlay unavailable" in w for w in outcome.warnings)


def test_predict_never_fails_while_sidecar_is_killed_restarted_and_slow(model_dir: Path, tmp_path: Path) -> None:
    sidecar_port = free_port()
    sidecar_env = serving_env(CXR_MODEL_DIR=str(model_dir))
    sidecar = start_uvicorn("app.sidecar.main:app", sidecar_port, sidecar_env, tmp_path / "sidecar.log")
    proxy = DelayProxy(sidecar_port)
    # Both APIs start while the sidecar loads TensorFlow; the second has the breaker disabled.
    api_port, bare_port = free_port(), free_port()
    api = _api(api_port, proxy, model_dir, tmp_path / "api.log", FAILURES)
    bare = _api(bare_port, proxy, model_dir, tmp_path / "api-no-breaker.log", 0)
    figures: dict[str, object] = {}
    try:
        wait_healthy(f"http://127.0.0.1:{api_port}/health/ready", api)
        wait_healthy(f"http://127.0.0.1:{bare_port}/health/ready", bare)
        wait_healthy(f"http://127.0.0.1:{sidecar_port}/health", sidecar, timeout_s=180)
        load = LoadDriver(f"http://127.0.0.1:{api_port}", FIXTURE_JPEGS[1]).start()
        try:
            load.run_phase("up", PHASE_S)
            load.phase = "killing"
            sidecar.send_signal(signal.SIGKILL)
            sidecar.wait(timeout=30)
            load.run_phase("down", PHASE_S)
            load.phase = "restarting"
            sidecar = start_uvicorn("app.sidecar.main:app", sidecar_port, sidecar_env, tmp_path / "sidecar2.log")
            wait_healthy(f"http://127.0.0.1:{sidecar_port}/health", sidecar, timeout_s=180)
            load.run_phase("restarting", OPEN_S + 1.0)  # the open breaker lets a probe through
            load.run_phase("back", PHASE_S)
            load.phase = "slowing"
            proxy.delay_s = SLOW_S
            load.run_phase("slow", PHASE_S)
            load.phase = "healing"
            proxy.delay_s = 0.0
            load.run_phase("healing", SLOW_S + OPEN_S + 1.0)
            load.run_phase("back_again", PHASE_S)
        finally:
            outcomes = load.stop()

        # Without the breaker: the second API (threshold 0) on the same proxy, slow then down.
        plain = LoadDriver(f"http://127.0.0.1:{bare_port}", FIXTURE_JPEGS[1]).start()
        try:
            proxy.delay_s = SLOW_S
            plain.run_phase("slow", PHASE_S)
            plain.phase = "downing"
            proxy.delay_s, proxy.upstream_port = 0.0, free_port()  # nothing listens there: refused
            time.sleep(SLOW_S)
            plain.run_phase("down", PHASE_S)
        finally:
            plain_outcomes = plain.stop()

        statuses = Counter(o.status for o in outcomes + plain_outcomes)
        figures = {
            "requests": len(outcomes) + len(plain_outcomes), "statuses": dict(statuses),
            "failed": sum(n for status, n in statuses.items() if status != 200),
            "concurrency": load.concurrency, "gradcam_timeout_s": TIMEOUT_S, "injected_delay_s": SLOW_S,
            "breaker": {"failures": FAILURES, "open_s": OPEN_S},
            "phases": {phase: {"n": len(_in(outcomes, phase)),
                               "overlays": sum(o.overlay for o in _in(outcomes, phase)),
                               "p50_s": round(sorted(o.latency_s for o in _in(outcomes, phase))[
                                   len(_in(outcomes, phase)) // 2], 3) if _in(outcomes, phase) else None,
                               "p99_s": round(p99([o.latency_s for o in _in(outcomes, phase)]), 3)}
                       for phase in ("up", "down", "back", "slow", "back_again")},
            "p99_s": {
                "killed_with_breaker": round(p99([o.latency_s for o in _in(outcomes, "down")]), 3),
                "killed_without_breaker": round(p99([o.latency_s for o in _in(plain_outcomes, "down")]), 3),
                "slow_with_breaker": round(p99([o.latency_s for o in _in(outcomes, "slow")]), 3),
                "slow_without_breaker": round(p99([o.latency_s for o in _in(plain_outcomes, "slow")]), 3),
            },
            "model_dir": str(model_dir),
        }
    finally:
        for process in (api, bare, sidecar):
            stop(process)
        proxy.close()
        out = REPO / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "fault_load.json").write_text(json.dumps(figures, indent=2))

    assert figures["failed"] == 0, figures["statuses"]
    for phase in ("up", "down", "back", "slow", "back_again"):
        assert len(_in(outcomes, phase)) >= 3, (phase, figures)
    # During the outage: every answer is the prediction without an overlay, with a warning.
    for phase in ("down", "slow"):
        assert all(_degraded(o) for o in _in(outcomes, phase)), phase
    assert all(_degraded(o) for o in _in(plain_outcomes, "slow") + _in(plain_outcomes, "down"))
    # The breaker opened: most outage answers did not wait for the sidecar.
    assert any("times in a row" in w for o in _in(outcomes, "slow") for w in o.warnings)
    assert figures["p99_s"]["slow_without_breaker"] >= TIMEOUT_S
    slow_with = [o.latency_s for o in _in(outcomes, "slow")]
    assert sorted(slow_with)[len(slow_with) // 2] < TIMEOUT_S / 2  # the median no longer pays the deadline
    # Overlays come back once the sidecar does.
    for phase in ("up", "back", "back_again"):
        answers = _in(outcomes, phase)
        assert sum(o.overlay for o in answers) >= len(answers) // 2, (phase, figures["phases"])
