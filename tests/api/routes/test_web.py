"""The web page's files: served from the API, self-contained (no CDN, no build step)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.api.routes.web import STATIC


def test_index_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file-input"' in page.text and 'name="viewport"' in page.text
    for name, kind in (("app.css", "text/css"), ("app.js", "text/javascript")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert client.get("/static/../config.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404


def test_page_loads_nothing_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), path.name
