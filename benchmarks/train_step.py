"""`python -m benchmarks.train_step`: seconds a training step of the shipped recipe, oneDNN off and on.

Each setting runs in its own process (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import): real
films through the real augmented batches, class weights and metrics, as `python -m training train`
fits them; one warm-up pass over `--films`, then one timed pass. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks.common import SHARED_DATA, bench_env
from benchmarks.report import machine

SETTINGS = {"oneDNN off": "0", "oneDNN on": "1"}


def measure(films: int, threads: int, recipe: str) -> float:
    """Seconds a step: one pass of `films` training films after a warm-up pass; runs inside the child process."""
    from dataclasses import replace

    import numpy as np

    from training.cli import set_threads
    from training.config import TrainConfig
    from training.dataset import AugmentedBatches, load_resized
    from training.recipes import recipe_overrides
    from training.train import balanced_class_weight, new_model, split_samples

    set_threads(threads)
    config = replace(TrainConfig(data=SHARED_DATA / "chest_xray_224"), **recipe_overrides(recipe))
    samples = split_samples(config)[0][:films]
    images = load_resized(samples, config.preprocessing)
    labels = np.array([s.label for s in samples])
    batches = AugmentedBatches(images, labels, config.batch_size, config.preprocessing, config.augmentation, 0)
    model = new_model(config)
    weights = balanced_class_weight(labels)
    model.fit(batches, epochs=1, verbose=0, class_weight=weights)
    started = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0, class_weight=weights)
    return (time.perf_counter() - started) / len(batches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=640, help="training films a pass (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow and OpenCV threads (default: %(default)s)")
    parser.add_argument("--recipe", default="same_pool_normal_crops")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.films, args.threads, args.recipe)))  # the parent reads the last line
        return
    rows: dict[str, float] = {}
    for name, flag in SETTINGS.items():
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.train_step", "--child", "--films", str(args.films),
             "--threads", str(args.threads), "--recipe", args.recipe],
            env=bench_env(TF_ENABLE_ONEDNN_OPTS=flag), capture_output=True, text=True, check=True,
        )
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
    base = rows["oneDNN off"]
    print(f"recipe {args.recipe}, {args.films} films a pass, {args.threads} threads, CPU: {machine()['cpu']}")
    print("| setting | s a step | speed-up |\n| --- | ---: | ---: |")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
