"""`python -m app.api`: serve the API on CXR_HOST:CXR_PORT (default 127.0.0.1:8000).

This is how the image runs it: granian (an HTTP server written in Rust) starts
CXR_WORKERS worker processes (default: one per usable core), each running the ASGI app
on its own event loop. Granian parses HTTP and moves request bodies off the Python
thread; under uvicorn the same app spent 0.13-0.17 ms more of the event loop per /predict
(see benchmarks/README.md). With more than one worker, the workers write their metrics
to a shared directory so that `/metrics`, whichever worker answers it, counts every
request.
"""

from __future__ import annotations

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.log import LogLevels

from app.api.config import Settings
from app.api.middleware.request_log import server_log_config
from app.api.middleware.telemetry import use_multiprocess_metrics


def main() -> None:
    settings = Settings()
    workers = settings.worker_count
    if workers > 1:
        use_multiprocess_metrics()
    Granian(
        "app.api.main:app", address=settings.host, port=settings.port, interface=Interfaces.ASGI,
        workers=workers, loop=Loops.uvloop, http=HTTPModes.http1, websockets=False,
        log_level=LogLevels(settings.log_level.lower()), log_dictconfig=server_log_config(settings.log_format),
    ).serve()


if __name__ == "__main__":
    main()
