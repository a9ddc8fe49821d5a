"""`python -m app.api`: serve the API on CXR_HOST:CXR_PORT (default 127.0.0.1:8000).

This is how the image runs it. It starts CXR_WORKERS uvicorn worker processes (default:
one per usable core). With more than one, the workers write their metrics to a shared
directory so that `/metrics`, whichever worker answers it, counts every request.
"""

from __future__ import annotations

import uvicorn

from app.api.config import Settings
from app.api.telemetry import use_multiprocess_metrics


def main() -> None:
    settings = Settings()
    workers = settings.worker_count
    if workers > 1:
        use_multiprocess_metrics()
    uvicorn.run("app.api.main:app", host=settings.host, port=settings.port, workers=workers,
                server_header=False, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
