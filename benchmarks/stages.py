"""Each stage in process, on the 16 full-resolution uploads: median and p95 per stage.

Stages are timed one by one exactly as the services chain them (the API: decode ->
resize -> median -> CLAHE -> float -> onnxruntime; the sidecar: Grad-CAM -> overlay
blend + PNG). `decode (as the card says)` follows the card's `jpeg_reduced_decode`;
`decode, reduced DCT scale` is the faster JPEG decode the shipped card turns off (a JPEG
and a PNG of one film then get different answers), shown for its cost.
Run alone: `python -m benchmarks.stages --model-dir models --reps 5`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, load_uploads, setup_process_env, summarize_ms, write_or_print

# (key, label shown in the table), in chain order.
STAGES = [
    ("header", "read header (format, declared size)"),
    ("decode_reduced", "decode, reduced DCT scale (reference)"),
    ("decode", "decode (as the card says)"),
    ("resize", "resize to model input (the card's interpolation)"),
    ("median", "median filter"),
    ("clahe", "CLAHE"),
    ("to_float", "to float32 batch"),
    ("preview", "overlay background (long side 512)"),
    ("prepare", "API prepare: all of the above, as served"),
    ("onnx", "ONNX inference (batch 1)"),
    ("gradcam", "Grad-CAM (compiled tf.function)"),
    ("overlay", "overlay blend + JPEG encode (the default)"),
    ("overlay_png", "overlay blend + PNG encode (?overlay_format=png)"),
    ("preview_png", "web page preview PNG encode (?preview=true)"),
]


def measure(model_dir: Path, reps: int) -> dict:
    setup_process_env()
    import cv2
    import numpy as np

    from app.imaging.decode import decode_image, read_header
    from app.imaging.overlay import OverlayFormat, encode_png, overlay_image, preview_of
    from app.imaging.preprocess import Preprocessor
    from app.model.engine import InferenceEngine
    from app.sidecar.config import SidecarSettings
    from app.sidecar.main import load_gradcam

    uploads = load_uploads()
    engine = InferenceEngine(model_dir)
    engine.warm_up()
    card, gradcam = load_gradcam(SidecarSettings(model_dir=model_dir))
    gradcam.warm_up()
    pre = Preprocessor(card.preprocessing)
    config = card.preprocessing
    clahe = cv2.createCLAHE(clipLimit=config.clahe_clip_limit,
                            tileGridSize=(config.clahe_tile_grid, config.clahe_tile_grid))
    times: dict[str, list[float]] = defaultdict(list)
    clock = time.perf_counter

    def timed(key: str, fn, *args):
        start = clock()
        out = fn(*args)
        times[key].append(clock() - start)
        return out

    for rep in range(reps + 1):  # the first pass warms caches and is thrown away
        if rep == 1:
            times.clear()
        for _, data in uploads:
            header = timed("header", read_header, data)
            timed("decode_reduced", lambda d: decode_image(d, reduce_to_min_side=config.input_size), data)
            gray = timed("decode", pre.decode, data)
            resized = timed("resize", pre.resize, gray)
            filtered = timed("median", cv2.medianBlur, resized, config.median_kernel)
            enhanced = timed("clahe", clahe.apply, filtered)
            if not np.array_equal(enhanced, pre.enhance(resized)):
                raise AssertionError("the staged chain differs from Preprocessor.enhance")
            model_input = timed("to_float", lambda e: Preprocessor.to_float(e)[np.newaxis, :, :, np.newaxis], enhanced)
            preview = timed("preview", preview_of, gray, header.width, header.height)
            prepared = timed("prepare", engine.prepare, data, 60_000_000)
            timed("onnx", engine.session.run, [card.output_name], {card.input_name: model_input})
            result = timed("gradcam", gradcam.compute, model_input[0, :, :, 0])
            timed("overlay", overlay_image, preview, result.heatmap, OverlayFormat.JPEG)
            timed("overlay_png", overlay_image, preview, result.heatmap, OverlayFormat.PNG)
            timed("preview_png", encode_png, preview)
            del prepared
    return {
        "reps": reps,
        "images": len(uploads),
        "stages": [{"key": key, "label": label, **summarize_ms(times[key])} for key, label in STAGES],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here (default: print)")
    args = parser.parse_args(argv)
    write_or_print(measure(args.model_dir, args.reps), args.json)


if __name__ == "__main__":
    main()
