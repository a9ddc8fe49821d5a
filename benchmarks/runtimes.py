"""The same model under three runtimes, in one process, on the same preprocessed inputs.

onnxruntime (the API's session, as the API configures it) vs Keras `model.predict`
(what most public projects call per request) vs one compiled `tf.function` around the
Keras model (what the sidecar does), at batch 1 and batch 32.
Run alone: `python -m benchmarks.runtimes --model-dir models`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, load_uploads, setup_process_env, summarize_ms, write_or_print

RUNTIMES = [("onnxruntime", "onnxruntime (API)"), ("keras_predict", "Keras model.predict"),
            ("tf_function", "tf.function (compiled graph)")]


def measure(model_dir: Path, calls_b1: int, calls_b32: int) -> dict:
    setup_process_env()
    import numpy as np

    from app.imaging.preprocess import Preprocessor, to_batch
    from app.model.engine import InferenceEngine

    engine = InferenceEngine(model_dir)
    card = engine.card
    pre = Preprocessor(card.preprocessing)
    images = [pre.from_bytes(data) for _, data in load_uploads()]
    batches = {1: to_batch(images[:1]), 32: to_batch((images * 2)[:32])}

    import keras
    import tensorflow as tf

    model = keras.models.load_model(model_dir / card.keras_file, compile=False)
    size = card.preprocessing.input_size
    compiled = tf.function(lambda x: model(x, training=False),
                           input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)])

    def run_onnx(batch):
        return engine.session.run([card.output_name], {card.input_name: batch})[0].reshape(-1)

    def run_predict(batch):
        return model.predict(batch, verbose=0).reshape(-1)

    def run_function(batch):
        return compiled(tf.constant(batch)).numpy().reshape(-1)

    runners = {"onnxruntime": run_onnx, "keras_predict": run_predict, "tf_function": run_function}
    results: dict = {"batches": {}}
    for batch_size, batch in batches.items():
        reference = run_onnx(batch)
        calls = calls_b1 if batch_size == 1 else calls_b32
        per_runtime = {}
        for key, runner in runners.items():
            for _ in range(3):  # warm up (tracing, allocations)
                output = runner(batch)
            diff = float(np.max(np.abs(output - reference)))
            durations = []
            for _ in range(calls):
                start = time.perf_counter()
                runner(batch)
                durations.append(time.perf_counter() - start)
            stats = summarize_ms(durations)
            stats["images_per_s"] = batch_size / (stats["median"] / 1000.0)
            stats["max_abs_diff_vs_onnx"] = diff
            per_runtime[key] = stats
        base = per_runtime["onnxruntime"]["median"]
        for stats in per_runtime.values():
            stats["ratio_vs_onnx"] = stats["median"] / base
        results["batches"][str(batch_size)] = per_runtime
    results["labels"] = dict(RUNTIMES)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--calls-b1", type=int, default=40)
    parser.add_argument("--calls-b32", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    write_or_print(measure(args.model_dir, args.calls_b1, args.calls_b32), args.json)


if __name__ == "__main__":
    main()
