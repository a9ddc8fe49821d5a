"""`python -m benchmarks.ab --baseline DIR`: this checkout's API against another checkout's, in paired rounds.

Both APIs run at once (as the image runs them: `python -m app.api`, its workers and pools), on
the same model folder, without a sidecar (`/predict?gradcam=false`). Each round loads one, then
the other, alternating which goes first, so drift in this VM's speed falls on both alike; the
table gives each round's throughput and their ratio (this / baseline), and the median ratio.

    git worktree add /tmp/baseline <commit>
    python -m benchmarks.ab --baseline /tmp/baseline --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, REPO, load_uploads
from benchmarks.load import run_load
from benchmarks.services import Service, Services


def _start(services: Services, name: str, root: Path, model_dir: Path) -> Service:
    service = services.start(name, "app.api.main:app", {
        "CXR_MODEL_DIR": str(model_dir), "CXR_GRADCAM_URL": "http://127.0.0.1:9", "CXR_LOG_LEVEL": "WARNING",
    }, root=root, launcher="app.api")
    service.wait_healthy()
    return service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--baseline-model-dir", type=Path, default=None,
                        help="the baseline's model folder (default: --model-dir; differs to price a model change)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=640)
    args = parser.parse_args(argv)
    uploads = load_uploads()
    rows = []
    with Services() as services:
        baseline_models = (args.baseline_model_dir or args.model_dir).resolve()
        apis = {"baseline": _start(services, "baseline", args.baseline.resolve(), baseline_models),
                "this": _start(services, "this", REPO, args.model_dir.resolve())}
        for index in range(args.rounds):
            order = ("baseline", "this") if index % 2 == 0 else ("this", "baseline")
            row = {}
            for name in order:
                result = run_load(f"{name}-{index}", "127.0.0.1", apis[name].port, "/predict?gradcam=false", uploads,
                                  concurrency=args.concurrency, requests=args.requests, max_seconds=60.0)
                if result["errors"]:
                    raise SystemExit(f"{name}: {result['errors']} errors in round {index}")
                row[name] = result
            rows.append(row)
            print(f"round {index}: baseline {row['baseline']['throughput_rps']:.1f} req/s, "
                  f"this {row['this']['throughput_rps']:.1f} req/s", flush=True)
        rss = {name: api.peak_rss_mb() for name, api in apis.items()}
    ratios = [r["this"]["throughput_rps"] / r["baseline"]["throughput_rps"] for r in rows]
    print("\n| round | first | baseline req/s | this req/s | ratio | baseline p50 ms | this p50 ms |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for index, (row, ratio) in enumerate(zip(rows, ratios, strict=True)):
        print(f"| {index} | {'baseline' if index % 2 == 0 else 'this'} | {row['baseline']['throughput_rps']:.1f} | "
              f"{row['this']['throughput_rps']:.1f} | {ratio:.3f} | {row['baseline']['p50_ms']:.1f} | "
              f"{row['this']['p50_ms']:.1f} |")
    print(f"\nmedian ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}) "
          f"at concurrency {args.concurrency}; peak RSS of the largest API process: "
          f"baseline {rss['baseline'] or 0:.0f} MB, this {rss['this'] or 0:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
