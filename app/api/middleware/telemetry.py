"""Prometheus metrics of one app instance (recorded per request by `app.api.middleware.access`).

Each app gets its own registry, so several apps (tests) never collide. When the API runs
as several worker processes (`python -m app.api`), prometheus_client's multiprocess mode
is on: every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR and
`Metrics.render` sums them, so /metrics is the same whichever worker answers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import Scope

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"})
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def use_multiprocess_metrics() -> None:
    """Call before the workers start: an empty directory for their metric files, in the environment
    they inherit (one given in PROMETHEUS_MULTIPROC_DIR is emptied of an earlier run's files)."""
    given = os.environ.get(MULTIPROCESS_ENV)
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="cxr-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_ENV] = str(path)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cxr_http_requests", "HTTP requests by route, method and status", ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cxr_http_request_duration_seconds", "HTTP request latency by route", ["route", "method"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stage_latency = Histogram(
            "cxr_predict_stage_duration_seconds", "Time spent in each /predict stage", ["stage"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.predictions = Counter(
            "cxr_predictions", "Predictions by label", ["label"], registry=self.registry,
        )
        self.gradcam_failures = Counter(
            "cxr_gradcam_failures", "Grad-CAM sidecar failures by reason", ["reason"], registry=self.registry,
        )
        self.rejected_inputs = Counter(
            "cxr_rejected_inputs", "Uploads rejected, by HTTP status", ["status"], registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text of this app, or of all worker processes in multiprocess mode."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)

    def record_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # The method is the client's word (HTTP allows any token): one series per invented method
        # would grow the metrics without bound, so those are counted together.
        method = method if method in HTTP_METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)


def route_name(scope: Scope) -> str:
    """The matched route's template; for answers given before routing (early 413s), the path
    itself when it is one of the app's paths; else "unmatched" (raw paths would explode the label set)."""
    route_path = getattr(scope.get("route"), "path", None)
    if route_path:
        return str(route_path)
    app = scope.get("app")
    path = scope.get("path", "")
    try:
        known = app.openapi()["paths"] if app is not None else {}  # cached by FastAPI after the first call
    except Exception:  # a broken schema must not break the metrics
        known = {}
    return path if path in known else "unmatched"
