"""The ceiling: in-process throughput of decode + preprocessing + inference, no HTTP.

The work a `/predict?gradcam=false` request must do, fed from memory by worker
threads that share one onnxruntime session, on every core this process may use.
Several layouts are tried (1 thread x all-core onnxruntime, N threads x 1-thread
onnxruntime, with and without onnxruntime's spin-waiting) and the best one is the
ceiling: what the service could reach at best on this machine.
Run alone: `python -m benchmarks.ceiling --model-dir models`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, cpu_count, load_uploads, setup_process_env


def _session(model_dir: Path, onnx_file: str, threads: int, spinning: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model_dir / onnx_file), options, providers=["CPUExecutionProvider"])


def measure(model_dir: Path, passes: int) -> dict:
    setup_process_env()
    import numpy as np

    from app.imaging.preprocess import Preprocessor
    from app.model_card import load_model_card

    card = load_model_card(model_dir)
    uploads = [data for _, data in load_uploads()]
    cores = cpu_count()
    # (worker threads, onnxruntime intra-op threads (0 = one per core), spin-waiting)
    layouts = [(1, 0, True), (1, 0, False), (cores, 1, False), (cores, 0, True), (cores, 0, False)]
    results = []
    for threads, ort_threads, spinning in layouts:
        session = _session(model_dir, card.onnx_file, ort_threads, spinning)
        size = card.preprocessing.input_size
        session.run([card.output_name], {card.input_name: np.zeros((1, size, size, 1), np.float32)})
        local = threading.local()

        def one(data: bytes, session=session, local=local) -> float:
            pre = getattr(local, "pre", None)
            if pre is None:
                pre = local.pre = Preprocessor(card.preprocessing)
            batch = pre.from_bytes(data)[None, :, :, None]
            (out,) = session.run([card.output_name], {card.input_name: batch})
            return float(out.reshape(-1)[0])

        work = uploads * passes
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, uploads))  # warm-up pass
            start, cpu = time.perf_counter(), time.process_time()
            list(pool.map(one, work))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        results.append({"threads": threads, "ort_threads": ort_threads, "spinning": spinning, "images": len(work),
                        "seconds": wall, "images_per_s": len(work) / wall, "cpu_ms_per_image": 1000 * cpu / len(work)})
        del session
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
