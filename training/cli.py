"""`python -m training train|evaluate|export|finalize`: the command line of the training package."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_HOME", str(Path(".keras-home").resolve()))

DEFAULT_DATA = Path("../shared/data/chest_xray_224")


def _add_train(sub: argparse._SubParsersAction) -> None:
    from training.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train the CNN, calibrate it, pick the threshold, export it")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root of a Kaggle-layout folder (default: %(default)s)")
    p.add_argument("--split", default=d.split, help="split folder to train on; validation is carved from it BY PATIENT (default: %(default)s)")
    p.add_argument("--out", type=Path, default=d.out, help="run folder for logs, checkpoints, split lists (default: %(default)s)")
    p.add_argument("--export-to", type=Path, default=Path("models"), help="export the trained model here (ONNX, Keras, card, plots); 'none' to skip (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs; early stopping on validation AUC may end sooner (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="peak Adam learning rate of the warm-up + cosine schedule (default: %(default)s)")
    p.add_argument("--patience", type=int, default=d.early_stopping_patience, help="early-stopping patience in epochs (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="fraction of each class's films moved to validation, whole patients at a time (default: %(default)s)")
    p.add_argument("--min-sensitivity", type=float, default=d.min_sensitivity, help="sensitivity floor on validation that sets the threshold (default: %(default)s)")
    p.add_argument("--input-size", type=int, default=d.preprocessing.input_size, help="model input side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for the split, weights and augmentation (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="use only this many films (quick trials)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate an exported model on a split; prints one JSON object")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root of a Kaggle-layout folder (default: %(default)s)")
    p.add_argument("--split", default="test", help="split folder under --data, e.g. test, val, train (default: %(default)s)")
    p.add_argument("--model", type=Path, default=Path("models"), help="folder with model.onnx and model_card.json (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="folder for the plots and metrics.json (default: <model>/evaluation/<split>)")
    p.add_argument("--threshold", type=float, default=None, help="override the card's threshold")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default: %(default)s)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's model to ONNX with a parity check and a model card")
    p.add_argument("--run", type=Path, default=Path("runs/latest"), help="run folder written by train (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("models"), help="destination folder (default: %(default)s)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or 18 (default: %(default)s)")


def _add_finalize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finalize", help="calibrate + threshold + export from a run's best checkpoint, without training (finishes a stopped run)")
    p.add_argument("--run", type=Path, default=Path("runs/latest"), help="run folder written by train (default: %(default)s)")
    p.add_argument("--export-to", type=Path, default=Path("models"), help="export destination; 'none' to skip (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_export(sub)
    _add_finalize(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from app.imaging.preprocess import PreprocessConfig
        from training.config import TrainConfig
        from training.train import train

        config = TrainConfig(
            data=args.data, split=args.split, out=args.out, epochs=args.epochs,
            batch_size=args.batch_size, learning_rate=args.learning_rate,
            early_stopping_patience=args.patience, val_fraction=args.val_fraction,
            min_sensitivity=args.min_sensitivity, seed=args.seed, limit=args.limit,
            verbose=2 if args.quiet else 1,
            preprocessing=PreprocessConfig(input_size=args.input_size),
        )
        train(config)
        if str(args.export_to).lower() != "none":
            from training.export import export_run

            export_run(config.out, args.export_to)
        return 0
    if args.command == "finalize":
        from training.train import refinalize

        refinalize(args.run)
        if str(args.export_to).lower() != "none":
            from training.export import export_run

            export_run(args.run, args.export_to)
        return 0
    if args.command == "export":
        from training.export import export_run

        card = export_run(args.run, args.out, opset=args.opset)
        print(json.dumps({"version": card["version"], "onnx_sha256": card["onnx_sha256"], "parity": card["parity"]}))
        return 0
    from training.evaluate import evaluate

    report = evaluate(args.data, args.split, args.model, args.out, args.threshold, args.bootstrap)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
