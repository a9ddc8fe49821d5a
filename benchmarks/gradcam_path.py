"""`python -m benchmarks.gradcam_path`: where the time of one `/predict` with Grad-CAM goes (concurrency 1).

Starts the sidecar and the API as `make bench` does, sends the 16 full-resolution films one at a
time, and prints the median of each stage the API reports in `timings_ms` (read, preprocess,
inference, gradcam_wait) beside the client's round trip; then calls the sidecar directly with each
film's model input (and, for a model whose graph gives them, with its Grad-CAM layer activations) and
prints its own compute time (`timings_ms.gradcam`) beside that round trip.
The gaps between the rows are what no stage accounts for (HTTP, the event loop, waiting for a core).
Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import DEFAULT_MODEL_DIR, load_uploads, setup_process_env
from benchmarks.services import Services

API_STAGES = ("read", "preprocess", "inference", "gradcam_wait", "total")


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def api_rows(url: str, uploads: list[tuple[str, bytes]], passes: int) -> dict[str, list[float]]:
    """Per stage, the milliseconds of every request (`client` is the round trip seen by the caller)."""
    rows: dict[str, list[float]] = {stage: [] for stage in (*API_STAGES, "client")}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for warm_up in (True, *([False] * passes)):
            for name, data in uploads:
                start = time.perf_counter()
                response = client.post("/predict", files={"file": (name, data, "image/jpeg")})
                elapsed = (time.perf_counter() - start) * 1000.0
                response.raise_for_status()
                body = response.json()
                if body.get("gradcam_overlay") is None:
                    raise RuntimeError(f"{name}: no overlay ({body.get('warnings')})")
                if warm_up:
                    continue
                rows["client"].append(elapsed)
                for stage in API_STAGES:
                    rows[stage].append(float(body["timings_ms"].get(stage, float("nan"))))
    return rows


def sidecar_rows(url: str, model_dir: Path, uploads: list[tuple[str, bytes]], passes: int) -> dict[str, list[float]]:
    """The sidecar alone: its compute time and the round trip, from each film's model input (`/gradcam`) and,
    where the model's graph gives them, from its Grad-CAM layer activations (`/gradcam/activations`)."""
    from app.gradcam.protocol import ACTIVATIONS_PATH, IMAGE_PATH, encode_activations_request, encode_request
    from app.model.engine import InferenceEngine

    engine = InferenceEngine(model_dir, threads=1)
    version = engine.card.version
    prepared = [engine.prepare(data, 50_000_000) for _, data in uploads]
    requests = {IMAGE_PATH: [encode_request(p.enhanced, version) for p in prepared]}
    if engine.has_gradcam_output:
        assessments = engine.assess(prepared, gradcam=True)
        requests[ACTIVATIONS_PATH] = [encode_activations_request(a.gradcam_activations, version) for a in assessments]
    rows: dict[str, list[float]] = {}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for path, bodies in requests.items():
            compute = rows.setdefault(f"sidecar {path} compute", [])
            trip = rows.setdefault(f"sidecar {path} round trip", [])
            for warm_up in (True, *([False] * passes)):
                for body, headers in bodies:
                    start = time.perf_counter()
                    response = client.post(path, content=body, headers=headers)
                    elapsed = (time.perf_counter() - start) * 1000.0
                    response.raise_for_status()
                    if not warm_up:
                        trip.append(elapsed)
                        compute.append(float(response.json()["timings_ms"]["gradcam"]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--passes", type=int, default=3, help="passes over the 16 films (default: %(default)s)")
    parser.add_argument("--sidecar-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--api-env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    setup_process_env()
    uploads = load_uploads()
    sidecar_env = dict(item.split("=", 1) for item in args.sidecar_env)
    api_env = dict(item.split("=", 1) for item in args.api_env)
    with Services() as services:
        sidecar = services.start("sidecar", "app.sidecar.main:app",
                                 {"CXR_MODEL_DIR": str(args.model_dir), **sidecar_env})
        sidecar.wait_healthy()
        api = services.start("api", "app.api.main:app", {
            "CXR_MODEL_DIR": str(args.model_dir), "CXR_GRADCAM_URL": sidecar.url, **api_env}, launcher="app.api")
        api.wait_healthy()
        rows = api_rows(api.url, uploads, args.passes)
        rows.update(sidecar_rows(sidecar.url, args.model_dir, uploads, args.passes))
    print(f"/predict with Grad-CAM, concurrency 1, {len(uploads)} films x {args.passes} passes; "
          f"sidecar env {sidecar_env or 'default'}, API env {api_env or 'default'}")
    print("| stage | median ms |\n| --- | ---: |")
    for stage, values in rows.items():
        print(f"| {stage} | {_median(values):.1f} |")


if __name__ == "__main__":
    main()
