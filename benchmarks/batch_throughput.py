"""Throughput of POST /predict/batch (32 files) against 32 single POST /predict requests.

    python -m benchmarks.batch_throughput [--model-dir models] [--rounds 5] [--json out.json]

The API runs as a real uvicorn process on a free localhost port (no sidecar; Grad-CAM off
on both paths, so the comparison is decode + preprocessing + inference + HTTP). The 32
uploads are the 16 full-resolution films of ../shared/data/val16_fullres, twice. Each
round sends them three ways and times the whole exchange:
  sequential  32 x /predict, one after another on one keep-alive connection
  concurrent  32 x /predict, 8 in flight at a time
  batch       1 x /predict/batch carrying all 32 files
Reported: the median over rounds of images per second. Bounded: `--rounds` rounds and
`--max-seconds` of wall clock, whichever ends first; localhost only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

from benchmarks.common import DEFAULT_MODEL_DIR, cpu_count, load_uploads
from benchmarks.services import Services

BATCH = 32
CONCURRENCY = 8


def _sequential(client: httpx.Client, url: str, uploads: list[tuple[str, bytes]]) -> None:
    for name, data in uploads:
        response = client.post(url + "/predict", params={"gradcam": "false"}, files={"file": (name, data)})
        response.raise_for_status()


async def _concurrent(url: str, uploads: list[tuple[str, bytes]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        async def one(name: str, data: bytes) -> None:
            async with gate:
                response = await client.post(url + "/predict", params={"gradcam": "false"},
                                             files={"file": (name, data)})
                response.raise_for_status()

        await asyncio.gather(*(one(n, d) for n, d in uploads))


def _batch(client: httpx.Client, url: str, uploads: list[tuple[str, bytes]]) -> None:
    response = client.post(url + "/predict/batch", files=[("files", (n, d)) for n, d in uploads])
    response.raise_for_status()
    results = response.json()["results"]
    if len(results) != len(uploads) or any(r["status"] != 200 for r in results):
        raise RuntimeError("the batch did not predict every file")


def measure(url: str, uploads: list[tuple[str, bytes]], rounds: int, max_seconds: float) -> dict:
    times: dict[str, list[float]] = {"sequential": [], "concurrent": [], "batch": []}
    deadline = time.monotonic() + max_seconds
    with httpx.Client(timeout=120) as client:
        _sequential(client, url, uploads[:4])  # warm-up: threads, CLAHE objects, onnxruntime arenas
        _batch(client, url, uploads)
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            for mode in times:
                start = time.perf_counter()
                if mode == "sequential":
                    _sequential(client, url, uploads)
                elif mode == "concurrent":
                    asyncio.run(_concurrent(url, uploads))
                else:
                    _batch(client, url, uploads)
                times[mode].append(time.perf_counter() - start)
    return {
        mode: {"rounds": len(values), "median_s": statistics.median(values),
               "images_per_s": len(uploads) / statistics.median(values)}
        for mode, values in times.items() if values
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    uploads = (load_uploads() * ((BATCH + 15) // 16))[:BATCH]
    with Services() as services:
        api = services.start("api", "app.api.main:app", {"CXR_MODEL_DIR": str(args.model_dir.resolve())},
                             health_path="/health/ready", extra_args=("--log-level", "warning"))
        health = api.wait_healthy()
        results = measure(api.url, uploads, args.rounds, args.max_seconds)
    report = {"model_version": health.get("model_version"), "model_dir": str(args.model_dir), "cpus": cpu_count(),
              "images": len(uploads), "concurrency": CONCURRENCY, "results": results}
    base = results["sequential"]["images_per_s"]
    print(f"model {report['model_version']}, {report['cpus']} CPUs, {len(uploads)} full-resolution JPEGs")
    for mode, row in results.items():
        print(f"  {mode:<11} {row['images_per_s']:7.1f} images/s  (median of {row['rounds']} rounds, "
              f"{row['median_s'] * 1000:.0f} ms for {len(uploads)}; x{row['images_per_s'] / base:.2f} vs sequential)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
