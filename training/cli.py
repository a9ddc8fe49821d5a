"""`python -m training train|evaluate|export|finalize|study|ensemble|calibrate|shift|stability|hard-films|ood|compare`: the command line of the training package."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.config import TrainConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_HOME", str(Path(".keras-home").resolve()))

DEFAULT_DATA = Path("../shared/data/chest_xray_224")


# Experiments must not overwrite the shipped model by accident: shipping is an explicit `--export-to models`.
_EXPORT_DEFAULT = "default: the run folder's export/ (pass models to replace the shipped model)"


def export_destination(requested: Path | None, run: Path) -> Path | None:
    """Where a command exports `run`: the requested folder, none for 'none', else `run`/export."""
    if requested is None:
        return run / "export"
    return None if str(requested).lower() == "none" else requested


def _export_if_asked(run: Path, requested: Path | None) -> None:
    """Export `run` where `export_destination` says, unless it says nowhere."""
    if (destination := export_destination(requested, run)) is not None:
        from training.export import export_run

        export_run(run, destination)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from training.config import TrainConfig
    from training.recipes import DEFAULT_RECIPE, RECIPES

    d = TrainConfig()
    p = sub.add_parser("train", help="train the CNN, calibrate it, pick the threshold, export it")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root of a Kaggle-layout folder (default: %(default)s)")
    p.add_argument("--split", default=d.split, help="split folder to train on; validation is carved from it BY PATIENT (default: %(default)s)")
    p.add_argument("--out", type=Path, default=d.out, help="run folder for logs, checkpoints, split lists (default: %(default)s)")
    p.add_argument("--export-to", type=Path, default=None, help=f"export the trained model here (ONNX, Keras, card, plots); 'none' to skip; {_EXPORT_DEFAULT}")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs of the warm-up + cosine schedule; the best by validation AUC is kept (default: the recipe's, else {d.epochs})")
    p.add_argument("--batch-size", type=int, default=None, help=f"(default: the recipe's, else {d.batch_size})")
    p.add_argument("--learning-rate", type=float, default=None, help=f"peak learning rate of the warm-up + cosine schedule (default: the recipe's, else {d.learning_rate})")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES), help="augmentation/loss recipe, see training/recipes.py (default: %(default)s)")
    p.add_argument("--members", type=int, default=1, help="train this many members (seeds seed, seed+1, ...) and ship their mean logit as one model (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the patient-level validation split, shared by all members (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for OpenCV and TensorFlow; 0: the libraries' default (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=None, help=f"fraction of each class's films moved to validation, whole patients at a time (default: the recipe's, else {d.val_fraction})")
    p.add_argument("--min-sensitivity", type=float, default=None, help=f"sensitivity floor on validation that sets the threshold (default: the recipe's, else {d.min_sensitivity})")
    p.add_argument("--input-size", type=int, default=d.preprocessing.input_size, help="model input side in pixels (default: %(default)s)")
    p.add_argument("--border-crop", type=float, default=None, help=f"share of each side kept, centred, after the resize (default: the recipe's, else {d.preprocessing.border_crop})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for the weights, batch order and augmentation (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="use only this many films (quick trials)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate an exported model on a split; prints one JSON object")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root of a Kaggle-layout folder (default: %(default)s)")
    p.add_argument("--split", default="test", help="split folder under --data, e.g. test, val, train (default: %(default)s)")
    p.add_argument("--model", type=Path, default=Path("models"), help="folder with model.onnx and model_card.json (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="folder for the plots and metrics.json (default: runs/evaluation/<model version>/<split>, outside the model folder)")
    p.add_argument("--threshold", type=float, default=None, help="override the card's threshold")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default: %(default)s)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's model to ONNX with a parity check and a model card")
    p.add_argument("--run", type=Path, default=Path("runs/latest"), help="run folder written by train (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help=f"destination folder; {_EXPORT_DEFAULT}")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or 18 (default: %(default)s)")


def _add_finalize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finalize", help="calibrate + threshold + export from a run's best checkpoint, without training (finishes a stopped run)")
    p.add_argument("--run", type=Path, default=Path("runs/latest"), help="run folder written by train (default: %(default)s)")
    p.add_argument("--export-to", type=Path, default=None, help=f"export destination; 'none' to skip; {_EXPORT_DEFAULT}")


def _add_study(sub: argparse._SubParsersAction) -> None:
    from training.recipes import RECIPES

    p = sub.add_parser("study", help="train candidate recipes with several seeds; compare on validation and test_dev")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaggle-layout root with train/ and the test split (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="one resumable run folder per recipe and seed, and STUDY.md (default: %(default)s)")
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names from training/recipes.py (default: all)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="every run's epochs (default: each recipe's own, else 22)")
    p.add_argument("--input-size", type=int, default=224, help="screen cheaply at 128, confirm at 224 (default: %(default)s)")
    p.add_argument("--test-split", default="test_dev", help="split folder the recipes are compared on, never trained on (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=1, help="training processes at once (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per training process; 0: the libraries' default (default: %(default)s)")
    p.add_argument("--deadline-minutes", type=float, default=None, help="stop training at this time; what is stopped resumes on the next run")
    p.add_argument("--limit", type=int, default=None, help="use only this many training films (smoke tests)")
    p.add_argument("--report-only", action="store_true", help="score what is trained, train nothing")
    p.add_argument("--control", default=None, help="recipe each ensemble's test AUC is compared with, patient-level paired bootstrap (default: none)")


def set_threads(n: int) -> None:
    """Cap OpenCV's (and TensorFlow's, when it is the backend) CPU threads; 0 leaves the defaults."""
    if n <= 0:
        return
    import cv2

    cv2.setNumThreads(n)
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, n // 2))


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="join finished runs (same split_seed) into one model: mean logit, calibrated on validation")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="member run folders (e.g. the study's runs/study/RECIPE/seedN)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root the members' split lists are relative to (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/ensemble"), help="run folder of the ensemble (default: %(default)s)")
    p.add_argument("--border-crop", type=float, default=None, help="serve with this border crop instead of the members' (default: theirs)")
    p.add_argument("--export-to", type=Path, default=None, help=f"export destination; 'none' to skip; {_EXPORT_DEFAULT}")


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="site calibration: refit probability and threshold on a site's labelled films; writes a new model version")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaggle-layout root of the site's films (default: %(default)s)")
    p.add_argument("--split", required=True, help="split folder under --data with NORMAL/ and PNEUMONIA/, e.g. test_dev")
    p.add_argument("--model", type=Path, default=Path("models"), help="the model to adapt (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="folder for the calibrated model (not --model itself)")
    p.add_argument("--min-sensitivity", type=float, default=0.97, help="sensitivity floor on the site's films that sets the threshold (default: %(default)s)")
    p.add_argument("--method", choices=("platt", "temperature"), default="platt", help="(default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default: %(default)s)")


def _add_shift(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shift", help="figures and tables of the train-to-test shift (training/SHIFT.md)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root with train/ and test_dev/ (default: %(default)s)")
    p.add_argument("--reference", type=Path, required=True, help="model folder to compare with, e.g. the seed's model")
    p.add_argument("--model", type=Path, default=Path("models"), help="the shipped model folder (default: %(default)s)")
    p.add_argument("--val-list", type=Path, default=None, help="a run's splits/val.txt for the validation normals (default: 200 train normals)")
    p.add_argument("--out", type=Path, default=Path("training/shift"), help="(default: %(default)s)")


def _add_stability(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stability", help="how far one model's answers move when a film is shifted by 1-3 px, re-framed or resized by another library (training/SHIFT.md)")
    p.add_argument("--model", type=Path, default=Path("models"), help="the model folder (default: %(default)s)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root with the split; full-resolution films in <data>/../val16_fullres (default: %(default)s)")
    p.add_argument("--split", default="test_dev", help="(default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="also write the report here as JSON")


def _add_hard_films(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hard-films", help="which films every study recipe gets wrong, each at its own threshold for the sensitivity floor (training/SHIFT.md)")
    p.add_argument("--recipes", type=Path, nargs="+", required=True, help="study recipe folders (<recipe>/seed*/logits_best.npz)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root with the split (default: %(default)s)")
    p.add_argument("--split", default="test_dev", help="the split the study scored as test (default: %(default)s)")
    p.add_argument("--min-sensitivity", type=float, default=0.97, help="(default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("training/shift"), help="(default: %(default)s)")


def _add_ood(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ood", help="fit the out-of-distribution check (is this a chest film?) on real films; adds the features output, writes ood.npz and the card's ood section")
    p.add_argument("--model", type=Path, default=Path("models"), help="the model folder (default: %(default)s)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root with the card's training split and test_dev/ (default: %(default)s)")
    p.add_argument("--val16", type=Path, default=None, help="full-resolution films to report on (default: <data>/../val16_fullres)")
    p.add_argument("--out", type=Path, default=None, help="write the fitted model here (a copy of --model); default: --model itself")
    p.add_argument("--report", type=Path, default=Path("training/OOD.md"), help="the Markdown report; 'none' to skip (default: %(default)s)")
    p.add_argument("--negatives", type=int, default=40, help="negatives per synthetic or real kind (default: %(default)s)")
    p.add_argument("--film-negatives", type=int, default=200, help="negatives per transformed-film kind (default: %(default)s)")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="two models' predictions.csv (from evaluate) on the same films: ROC AUC of each, A minus B with a patient-level paired bootstrap interval")
    p.add_argument("a", type=Path, help="predictions.csv of model A")
    p.add_argument("b", type=Path, help="predictions.csv of model B, on the same films")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient resamples for the 95%% interval (default: %(default)s)")


def _add_flush_denormals(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flush-denormals", help="set a model folder's subnormal ONNX weights to zero (onnxruntime's slow path; outputs checked bit-identical); new hash and version")
    p.add_argument("--model", type=Path, default=Path("models"), help="model folder (default: %(default)s)")
    p.add_argument("--films", type=Path, default=DEFAULT_DATA / "test_dev", help="folder of films, searched recursively, scored before and after (default: %(default)s)")


def _add_gradcam_output(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("add-gradcam-output", help="add the gradcam_activations output to a model folder's ONNX file (the sidecar then maps from the API's activations; outputs checked bit-identical); new hash and version")
    p.add_argument("--model", type=Path, default=Path("models"), help="model folder (default: %(default)s)")
    p.add_argument("--films", type=Path, default=DEFAULT_DATA / "test_dev", help="folder of films, searched recursively, scored before and after (default: %(default)s)")


def _add_tta(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tta", help="screen test-time augmentation: runs' ROC AUC on a split per re-framing of the films and per averaged set, against the plain film")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="training run folders (their best checkpoints; their mean logit is the ensemble)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="root of a Kaggle-layout folder (default: %(default)s)")
    p.add_argument("--split", default="test_dev", help="split folder to score (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient resamples for the 95%% intervals (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_export(sub)
    _add_finalize(sub)
    _add_study(sub)
    _add_ensemble(sub)
    _add_calibrate(sub)
    _add_shift(sub)
    _add_stability(sub)
    _add_hard_films(sub)
    _add_ood(sub)
    _add_compare(sub)
    _add_flush_denormals(sub)
    _add_gradcam_output(sub)
    _add_tta(sub)
    return parser


# `train` options a recipe may set too: None on the command line leaves the recipe's value.
_RECIPE_OPTIONS = ("epochs", "batch_size", "learning_rate", "val_fraction", "min_sensitivity")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """`train`'s config: the recipe's overrides, then the command line's options. An option a recipe may
    set (`--epochs`, `--batch-size`, `--learning-rate`, `--val-fraction`, `--min-sensitivity`, and
    `--border-crop` of its chain) replaces the recipe's value only when it is given."""
    from training.config import TrainConfig
    from training.recipes import recipe_overrides

    chain = recipe_overrides(args.recipe).get("preprocessing", TrainConfig().preprocessing)
    chain = dataclasses.replace(
        chain, input_size=args.input_size, **({"border_crop": args.border_crop} if args.border_crop is not None else {})
    )
    given = {name: getattr(args, name) for name in _RECIPE_OPTIONS if getattr(args, name) is not None}
    return TrainConfig.for_recipe(
        args.recipe, data=args.data, split=args.split, out=args.out, **given,
        seed=args.seed, split_seed=args.split_seed, limit=args.limit,
        verbose=2 if args.quiet else 1,
        preprocessing=chain,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from training.train_ensemble import train_ensemble

        set_threads(args.threads)
        config = train_config(args)
        train_ensemble(config, args.members)
        _export_if_asked(config.out, args.export_to)
        return 0
    if args.command == "study":
        from training.study import StudyPlan, run_study

        plan = StudyPlan(
            data=args.data, out=args.out, recipes=tuple(args.recipes.split(",")),
            seeds=tuple(int(s) for s in args.seeds.split(",")), epochs=args.epochs, input_size=args.input_size,
            test_split=args.test_split, parallel=args.parallel, threads=args.threads,
            deadline_s=args.deadline_minutes * 60 if args.deadline_minutes else None, limit=args.limit,
            control=args.control,
        )
        run_study(plan, train=not args.report_only)
        return 0
    if args.command == "tta":
        from training.tta import tta_report

        print(json.dumps(tta_report(args.runs, args.data, args.split, args.bootstrap), indent=2))
        return 0
    if args.command == "flush-denormals":
        from training.onnx_graph.denormals import flush_denormals_cli

        print(json.dumps(flush_denormals_cli(args.model, args.films), indent=2))
        return 0
    if args.command == "add-gradcam-output":
        from training.onnx_graph.gradcam import add_gradcam_output_cli

        print(json.dumps(add_gradcam_output_cli(args.model, args.films), indent=2))
        return 0
    if args.command == "compare":
        from training.compare import compare_predictions

        print(json.dumps(compare_predictions(args.a, args.b, n_boot=args.bootstrap), indent=2))
        return 0
    if args.command == "ensemble":
        from training.train_ensemble import join_members

        join_members(args.out, args.runs, args.data, border_crop=args.border_crop)
        _export_if_asked(args.out, args.export_to)
        return 0
    if args.command == "calibrate":
        from training.site_calibration import calibrate_site

        card = calibrate_site(args.data, args.split, args.model, args.out, args.min_sensitivity, args.method,
                              args.bootstrap)
        site = card["site_calibration"]
        print(json.dumps({"version": card["version"], "threshold": card["threshold"],
                          "before": {k: site["before"][k] for k in ("accuracy", "roc_auc", "recall", "specificity", "ece")},
                          "after_in_sample": {k: site["after_in_sample"][k] for k in ("accuracy", "roc_auc", "recall", "specificity", "ece")},
                          "after_cross_validated": site["after_cross_validated"]}, indent=2))
        return 0
    if args.command == "shift":
        from training.shift import run

        report = run(args.data, args.reference, args.model, args.out, args.val_list)
        print(json.dumps({k: report[k] for k in ("framing_sensitivity", "resize_paths")}, indent=2))
        return 0
    if args.command == "stability":
        from training.shift import stability_report

        report = stability_report(args.model, args.data, args.split)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
        return 0
    if args.command == "hard-films":
        from training.hard_films import run as hard_films

        report = hard_films(args.recipes, args.data, args.split, args.out, args.min_sensitivity)
        print(json.dumps({k: report[k] for k in ("recipes", "false_positives", "false_negatives")}, indent=2))
        return 0
    if args.command == "ood":
        from training.ood.run import run_cli

        json.dump(run_cli(args.model, args.data, args.val16, args.out, args.report, args.negatives,
                          args.film_negatives), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.command == "finalize":
        from training.train import refinalize

        refinalize(args.run)
        _export_if_asked(args.run, args.export_to)
        return 0
    if args.command == "export":
        from training.export import export_run

        destination = export_destination(args.out, args.run)
        if destination is None:
            print("export: --out none exports nothing; give a folder", file=sys.stderr)
            return 2
        card = export_run(args.run, destination, opset=args.opset)
        print(json.dumps({"version": card["version"], "onnx_sha256": card["onnx_sha256"], "parity": card["parity"]}))
        return 0
    from training.evaluate import evaluate

    report = evaluate(args.data, args.split, args.model, args.out, args.threshold, args.bootstrap)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
