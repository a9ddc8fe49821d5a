"""The ceiling: in-process throughput of decode + preprocessing + inference, no HTTP.

The work a `/predict?gradcam=false` request must do, fed from memory by worker
threads that share one onnxruntime session, on every core this process may use.
Several layouts are tried (1 thread x all-core onnxruntime, N threads x 1-thread
onnxruntime, ...) and the best one is the ceiling: what the service could reach at
best on this machine. Run alone: `python -m benchmarks.ceiling --model-dir models`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, cpu_count, load_uploads, setup_process_env


def measure(model_dir: Path, passes: int) -> dict:
    setup_process_env()
    from app.api.inference import InferenceEngine
    from app.imaging.preprocess import Preprocessor

    uploads = [data for _, data in load_uploads()]
    cores = cpu_count()
    layouts = sorted({(1, 0), (cores, 1), (cores, 0)})  # (worker threads, onnxruntime intra-op threads; 0 = auto)
    results = []
    for threads, ort_threads in layouts:
        engine = InferenceEngine(model_dir, threads=ort_threads)
        engine.warm_up()
        card = engine.card
        local = threading.local()

        def one(data: bytes, engine=engine, card=card, local=local) -> float:
            pre = getattr(local, "pre", None)
            if pre is None:
                pre = local.pre = Preprocessor(card.preprocessing)
            batch = pre.from_bytes(data)[None, :, :, None]
            (out,) = engine.session.run([card.output_name], {card.input_name: batch})
            return float(out.reshape(-1)[0])

        work = uploads * passes
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, uploads))  # warm-up pass
            start = time.perf_counter()
            list(pool.map(one, work))
            wall = time.perf_counter() - start
        results.append({"threads": threads, "ort_threads": ort_threads, "images": len(work),
                        "seconds": wall, "images_per_s": len(work) / wall})
    best = max(results, key=lambda r: r["images_per_s"])
    return {"cores": cores, "layouts": results, "ceiling_images_per_s": best["images_per_s"], "best": best}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--passes", type=int, default=12, help="passes over the 16 uploads per layout")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    text = json.dumps(measure(args.model_dir, args.passes), indent=2)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
