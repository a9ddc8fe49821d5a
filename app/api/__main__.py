"""`python -m app.api`: serve the API on CXR_HOST:CXR_PORT (default 127.0.0.1:8000)."""

from __future__ import annotations

import uvicorn

from app.api.config import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run("app.api.main:app", host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
