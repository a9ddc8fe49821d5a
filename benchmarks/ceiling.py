"""The ceiling: in-process throughput of decode + preprocessing + inference, no HTTP.

The work a `/predict?gradcam=false` request must do, fed from memory by worker
threads that share one onnxruntime session, on every core this process may use.
Several layouts are tried (1 thread x all-core onnxruntime, N threads x 1-thread
onnxruntime, with and without onnxruntime's spin-waiting, OpenCV's own thread pool on or
off) and the best one is the ceiling: what the service could reach at best on this
machine. Run alone: `python -m benchmarks.ceiling --model-dir models`; `--layout` runs
one layout only (the suite re-measures the best one next to each load run).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, cpu_count, load_uploads, setup_process_env, write_or_print


def _session(model_dir: Path, onnx_file: str, threads: int, spinning: bool):
    from app.model.session import open_session

    return open_session(model_dir / onnx_file, threads, spinning)


# (worker threads, onnxruntime threads (0 = 1/core), spin-wait, OpenCV threads (0 = OpenCV's default))
Layout = tuple[int, int, bool, int]


def default_layouts(cores: int) -> list[Layout]:
    return [(1, 0, True, 0), (1, 0, False, 0), (cores, 1, False, 0), (cores, 1, False, 1), (cores, 0, True, 0),
            (cores, 0, False, 0)]


def measure(model_dir: Path, passes: int, layouts: list[Layout] | None = None) -> dict:
    setup_process_env()
    import cv2
    import numpy as np

    from app.imaging.preprocess import Preprocessor
    from app.model.card import load_model_card

    card = load_model_card(model_dir)
    uploads = [data for _, data in load_uploads()]
    cores = cpu_count()
    default_cv_threads = cv2.getNumThreads()
    results = []
    for threads, ort_threads, spinning, cv_threads in layouts or default_layouts(cores):
        cv2.setNumThreads(cv_threads or default_cv_threads)
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
        results.append({"threads": threads, "ort_threads": ort_threads, "spinning": spinning,
                        "opencv_threads": cv_threads, "images": len(work),
                        "seconds": wall, "images_per_s": len(work) / wall, "cpu_ms_per_image": 1000 * cpu / len(work)})
        del session
    best = max(results, key=lambda r: r["images_per_s"])
    return {"cores": cores, "layouts": results, "ceiling_images_per_s": best["images_per_s"], "best": best}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--passes", type=int, default=12, help="passes over the 16 uploads per layout")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--layout", help="one layout only: THREADS,ORT_THREADS,SPIN(0/1),OPENCV_THREADS")
    args = parser.parse_args(argv)
    layouts = None
    if args.layout:
        threads, ort_threads, spinning, cv_threads = (int(part) for part in args.layout.split(","))
        layouts = [(threads, ort_threads, bool(spinning), cv_threads)]
    write_or_print(measure(args.model_dir, args.passes, layouts), args.json)


if __name__ == "__main__":
    main()
