"""`python -m app.sidecar`: serve the Grad-CAM sidecar on CXR_SIDECAR_HOST:CXR_SIDECAR_PORT (127.0.0.1:8001)."""

from __future__ import annotations

import uvicorn

from app.sidecar.config import SidecarSettings


def main() -> None:
    settings = SidecarSettings()
    uvicorn.run("app.sidecar.main:app", host=settings.sidecar_host, port=settings.sidecar_port)


if __name__ == "__main__":
    main()
