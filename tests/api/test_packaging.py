"""The API image must not need TensorFlow: app.api and app.imaging import only the serving set."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SERVING_SET = {
    "fastapi", "starlette", "onnxruntime", "cv2", "numpy", "PIL", "pydantic", "pydantic_settings", "httpx",
    "prometheus_client", "anyio", "pydicom", "granian", "uvicorn", "python_multipart", "app",
}
API_SOURCES = [REPO / "app" / "api", REPO / "app" / "imaging", REPO / "app" / "model_card.py",
               REPO / "app" / "gradcam_protocol.py"]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_api_sources_import_only_serving_set() -> None:
    files = [p for source in API_SOURCES for p in ([source] if source.is_file() else source.rglob("*.py"))]
    assert files
    for path in files:
        outside = imported_roots(path) - SERVING_SET - set(sys.stdlib_module_names)
        assert not outside, f"{path.relative_to(REPO)} imports {sorted(outside)}"


def test_api_app_import_loads_no_tensorflow() -> None:
    code = (
        "import sys; import app.api.main; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'training')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
