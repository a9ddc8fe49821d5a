"""The package layout the next engineer relies on (issue 13): a small app/api, tests that mirror
app/, and no module reaching into another package's private names."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app"

# Modules without a test file of their own, and why.
NO_TEST_FILE = {
    "api/__main__.py": "starts granian; run for real by tests/integration/test_launcher.py",
    "api/main.py": "the app factory: every test under tests/api drives it",
    "api/state.py": "what the app holds between requests: exercised by every route test",
    "api/middleware/access.py": "tests/api/middleware/test_reliability.py (request ids, access log)",
    "api/middleware/backpressure.py": "tests/api/middleware/test_reliability.py (in-flight bound)",
    "api/middleware/body_limit.py": "tests/api/routes/test_predict_bad_input.py (413 before and while reading)",
    "api/middleware/request_log.py": "tests/api/middleware/test_reliability.py (JSON log lines)",
    "api/middleware/security.py": "tests/api/middleware/test_reliability.py (API key, CORS)",
    "api/middleware/telemetry.py": "tests/api/routes/test_metrics.py",
    "api/uploads.py": "the form reading of /predict and /predict/batch: tests/api/routes/test_predict_bad_input.py",
    "api/errors.py": "error bodies: tests/api/middleware/test_reliability.py and the schema fuzz test",
    "gradcam/client.py": "through /predict against live, slow and wrong sidecars: "
                         "tests/api/routes/test_predict_gradcam_fallback.py",
    "gradcam/protocol.py": "both ends of the wire: tests/sidecar/test_app.py",
    "imaging/decode.py": "tests/imaging/test_header.py and test_fuzz.py",
    "imaging/errors.py": "exception types only",
    "imaging/colour.py": "one function, tested with the input check: tests/model/test_ood.py",
    "model/card.py": "loaded by every model test; tests/training/test_pipeline.py writes and reads cards",
    "model/session.py": "one function, used by every ONNX test (tests/model/test_engine.py)",
    "sidecar/__main__.py": "starts uvicorn; run for real by tests/integration",
    "sidecar/config.py": "settings only, read by tests/sidecar",
    "sidecar/main.py": "tests/sidecar/test_app.py",
    "batch/__main__.py": "the entry point of tests/batch's command-line runs",
    "batch/cli.py": "the command line: tests/batch/test_local.py runs it as a user would",
    "batch/files.py": "which files a run takes (folders, globs, extension-less DICOM): tests/batch/test_local.py",
    "batch/scoring.py": "the rows both engines write, compared with training.evaluate: tests/batch/test_local.py",
}


def _modules() -> list[str]:
    return sorted(str(p.relative_to(APP)) for p in APP.rglob("*.py") if p.name != "__init__.py")


def _test_files(module: str) -> list[Path]:
    path = Path(module)
    folder = REPO / "tests" / path.parent
    return sorted(folder.glob(f"test_{path.stem}.py")) + sorted(folder.glob(f"test_{path.stem}_*.py"))


def test_api_package_has_at_most_ten_modules() -> None:
    modules = sorted(p.name for p in (APP / "api").glob("*.py"))
    assert len(modules) <= 10, modules


def test_every_module_has_a_test_file_or_a_stated_reason() -> None:
    missing = [m for m in _modules() if not _test_files(m) and m not in NO_TEST_FILE]
    assert not missing, f"add tests/<package>/test_<module>.py or a reason in NO_TEST_FILE: {missing}"
    stale = [m for m in NO_TEST_FILE if not (APP / m).is_file()]
    assert not stale, f"NO_TEST_FILE names modules that no longer exist: {stale}"


def _private_imports(path: Path) -> list[str]:
    """`from a.b import _name` where a.b is not the importing module's own package."""
    own = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private and node.module != own and not node.module.startswith(own + "."):
                found.append(f"{path.relative_to(REPO)}: from {node.module} import {', '.join(private)}")
    return found


def test_no_module_imports_another_packages_private_names() -> None:
    files = [p for folder in ("app", "training", "benchmarks", "scripts") for p in (REPO / folder).rglob("*.py")]
    found = [line for path in files for line in _private_imports(path)]
    assert not found, found
