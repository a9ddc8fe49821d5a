"""The recipe study: train candidate recipes with several seeds, compare them on
validation and on the `test_dev` films, and write the table (`STUDY.md`, `study.json`).

`python -m training study --recipes baseline,framing --seeds 1,2,3` trains every
(recipe, seed) as its own resumable run folder under `--out` (a rerun skips what is
done and resumes what was stopped), in `--parallel` processes, then scores each run's
best-by-validation-AUC checkpoint and its last epoch. For every run, and for the
ensemble of each recipe's seeds (mean logit), it fits Platt scaling and the threshold
on validation ONLY, then reports on `test_dev`: ROC AUC, and sensitivity, specificity,
accuracy and ECE at that validation-chosen threshold. `test_dev` is never trained or
calibrated on here; it only ranks recipes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.imaging.preprocess import PreprocessConfig
from training import calibration, metrics
from training.data import list_samples, read_split_list
from training.site_calibration import cross_validated
from training.train import BEST_CHECKPOINT, LAST_CHECKPOINT

CHECKPOINTS = {"best": BEST_CHECKPOINT, "last": LAST_CHECKPOINT}


@dataclass(frozen=True)
class StudyPlan:
    data: Path
    out: Path
    recipes: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int | None  # None: each recipe's own (training/recipes.py), else TrainConfig's
    input_size: int
    test_split: str = "test_dev"
    parallel: int = 1
    threads: int = 0
    deadline_s: float | None = None
    min_sensitivity: float = 0.975
    limit: int | None = None  # films of train to use (smoke tests)
    control: str | None = None  # the recipe every ensemble is compared with (paired patient bootstrap)

    def run_dir(self, recipe: str, seed: int) -> Path:
        return self.out / recipe / f"seed{seed}"


def _train_command(plan: StudyPlan, recipe: str, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "training", "train", "--data", str(plan.data), "--recipe", recipe,
        "--seed", str(seed), *(["--epochs", str(plan.epochs)] if plan.epochs is not None else []),
        "--input-size", str(plan.input_size),
        "--out", str(plan.run_dir(recipe, seed)), "--export-to", "none", "--quiet",
        "--threads", str(plan.threads), "--min-sensitivity", str(plan.min_sensitivity),
        *(["--limit", str(plan.limit)] if plan.limit else []),
    ]


def train_all(plan: StudyPlan) -> None:
    """Train every run not finished yet, `parallel` at a time; stop them all at the deadline."""
    started = time.time()
    queue = [(r, s) for r in plan.recipes for s in plan.seeds]
    running: list[tuple[subprocess.Popen, str]] = []
    while queue or running:
        while queue and len(running) < plan.parallel:
            recipe, seed = queue.pop(0)
            run_dir = plan.run_dir(recipe, seed)
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / "train.log", "a")  # noqa: SIM115 (closed when the process ends)
            proc = subprocess.Popen(_train_command(plan, recipe, seed), stdout=log, stderr=subprocess.STDOUT)
            running.append((proc, f"{recipe}/seed{seed}"))
            print(f"started {recipe}/seed{seed}", flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                print(f"finished {name}: exit {proc.returncode} after {time.time() - started:.0f}s", flush=True)
        if plan.deadline_s is not None and time.time() - started > plan.deadline_s:
            for proc, name in running:
                proc.terminate()
                print(f"deadline: stopped {name} (it resumes on the next run)", flush=True)
            for proc, _ in running:
                proc.wait()
            return


def _films(paths: list[Path], pre: PreprocessConfig) -> np.ndarray:
    from training.data import Sample
    from training.dataset import enhance_all, load_resized

    return enhance_all(load_resized([Sample(p, 0) for p in paths], pre, workers=os.cpu_count() or 2), pre)


def score_runs(plan: StudyPlan) -> dict:
    """Raw logits of each run's checkpoints on validation and test films: {run: {ckpt: (val, test)}}.

    One logit model is built per architecture (batch-norm recipes differ) and each checkpoint's
    weights are loaded into it, so a prediction function is compiled once per architecture, not
    once per checkpoint.
    """
    import keras

    from training.config import TrainConfig
    from training.model import LOGIT_LAYER
    from training.train import architecture, checkpoint_path, load_validated_weights, new_model

    dirs = [plan.run_dir(r, s) for r in plan.recipes for s in plan.seeds]
    first = next(d for d in dirs if (d / "splits" / "val.txt").is_file())
    val_samples = read_split_list(first / "splits" / "val.txt", plan.data)
    test_samples = list_samples(plan.data / plan.test_split)
    config = TrainConfig.from_dict(json.loads((first / "run.json").read_text())["config"])
    films: dict[PreprocessConfig, tuple[np.ndarray, np.ndarray]] = {}
    models: dict[tuple, tuple] = {}

    def films_for(pre: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
        """Validation and test films through this chain (each run is scored with its own), made once."""
        if pre not in films:
            films[pre] = (_films([s.path for s in val_samples], pre), _films([s.path for s in test_samples], pre))
        return films[pre]

    def model_for(run_config: TrainConfig) -> tuple:
        """(model, logit model) of this run's architecture, built once."""
        key = tuple(architecture(run_config).items())
        if key not in models:
            model = new_model(run_config)
            models[key] = (model, keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output))
        return models[key]

    scores: dict = {"labels": {"val": np.array([s.label for s in val_samples]),
                               "test": np.array([s.label for s in test_samples])},
                    "test_patients": [s.patient for s in test_samples], "runs": {}}
    for recipe in plan.recipes:
        for seed in plan.seeds:
            run_dir = plan.run_dir(recipe, seed)
            if (run_dir / "splits" / "val.txt").read_text() != (first / "splits" / "val.txt").read_text():
                raise ValueError(f"{run_dir} was validated on another split")
            run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
            run_config = TrainConfig.from_dict(run["config"]) if "config" in run else config
            val_x, test_x = films_for(run_config.preprocessing)
            model, logit_model = model_for(run_config)
            for ckpt in CHECKPOINTS:
                file = checkpoint_path(run_dir, CHECKPOINTS[ckpt])
                if file is None:
                    continue
                load_validated_weights(model, file, ema=run.get("config", {}).get("ema_momentum", 0.0) > 0)
                val = logit_model.predict(val_x, batch_size=64, verbose=0).reshape(-1)
                test = logit_model.predict(test_x, batch_size=64, verbose=0).reshape(-1)
                np.savez_compressed(run_dir / f"logits_{ckpt}.npz", val=val, test=test)
                scores["runs"][(recipe, seed, ckpt)] = {
                    "val": val, "test": test, "epochs_run": run.get("epochs_run"),
                    "fit_seconds": run.get("fit_seconds"),
                }
    return scores


def judge(val_logits: np.ndarray, test_logits: np.ndarray, labels: dict, min_sensitivity: float) -> dict:
    """Platt + threshold fitted on validation, applied unchanged to the test films."""
    a, b = calibration.fit_platt(val_logits, labels["val"])
    val_p = calibration.sigmoid(a * val_logits + b)
    test_p = calibration.sigmoid(a * test_logits + b)
    threshold = calibration.choose_threshold(labels["val"], val_p, min_sensitivity)
    at = metrics.threshold_metrics(labels["test"], test_p, threshold)
    return {
        "val_auc": metrics.roc_auc(labels["val"], val_p),
        "test_auc": metrics.roc_auc(labels["test"], test_p),
        "test_sensitivity": at["recall"], "test_specificity": at["specificity"], "test_accuracy": at["accuracy"],
        "test_ece": metrics.expected_calibration_error(labels["test"], test_p),
        "test_normal_mean_p": float(test_p[labels["test"] == 0].mean()),
    }


def summarise(plan: StudyPlan, scores: dict) -> list[dict]:
    rows = []
    ensemble_logits: dict[tuple[str, str], np.ndarray] = {}  # (recipe, checkpoint) -> the seeds' mean test logit
    keys = ("val_auc", "test_auc", "test_sensitivity", "test_specificity", "test_accuracy", "test_ece",
            "test_normal_mean_p")
    for recipe in plan.recipes:
        for ckpt in CHECKPOINTS:
            runs = [scores["runs"][(recipe, s, ckpt)] for s in plan.seeds if (recipe, s, ckpt) in scores["runs"]]
            if not runs:
                continue
            judged = [judge(r["val"], r["test"], scores["labels"], plan.min_sensitivity) for r in runs]
            row = {"recipe": recipe, "checkpoint": ckpt, "seeds": len(runs),
                   "epochs_run": [r["epochs_run"] for r in runs],
                   "fit_seconds": [r["fit_seconds"] for r in runs]}
            for key in keys:
                values = np.array([j[key] for j in judged])
                row[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                            "values": values.round(4).tolist()}
            if len(runs) > 1:
                mean_val = np.mean([r["val"] for r in runs], axis=0)
                mean_test = np.mean([r["test"] for r in runs], axis=0)
                ensemble = judge(mean_val, mean_test, scores["labels"], plan.min_sensitivity)
                # what `python -m training calibrate` on the test site would give on its new films
                ensemble["site_calibrated"] = cross_validated(
                    mean_test, scores["labels"]["test"], scores["test_patients"], "platt", plan.min_sensitivity)
                row["ensemble"] = ensemble
                ensemble_logits[(recipe, ckpt)] = mean_test
            rows.append(row)
    if plan.control:
        compare_with_control(rows, ensemble_logits, scores, plan.control)
    return rows


def compare_with_control(
    rows: list[dict], ensemble_logits: dict[tuple[str, str], np.ndarray], scores: dict, control_recipe: str
) -> None:
    """Each ensemble's test ROC AUC minus the control recipe's, on the same films, with a 95% interval
    from resampling test patients: whether a candidate's gain is more than the test set's noise."""
    for row in rows:
        control = ensemble_logits.get((control_recipe, row["checkpoint"]))
        own = ensemble_logits.get((row["recipe"], row["checkpoint"]))
        if control is None or own is None or row["recipe"] == control_recipe:
            continue
        row["ensemble"]["test_auc_minus_control"] = metrics.paired_bootstrap_difference(
            scores["labels"]["test"], own, control, np.asarray(scores["test_patients"]), metrics.roc_auc)


def _site(ensemble: dict) -> str:
    site = ensemble["site_calibrated"]
    return " / ".join(f"{100 * site[k]:.1f}" for k in ("accuracy", "sensitivity", "specificity"))


def _versus(ensemble: dict) -> str:
    versus = ensemble.get("test_auc_minus_control")
    if versus is None:
        return "-"
    low, high = versus["ci95"]
    return f"{versus['difference']:+.3f} ({low:+.3f} to {high:+.3f})"


def render(plan: StudyPlan, rows: list[dict]) -> str:
    def ms(cell: dict, pct: bool = False) -> str:
        f = 100 if pct else 1
        return f"{cell['mean'] * f:.{1 if pct else 3}f} ± {cell['sd'] * f:.{1 if pct else 3}f}"

    lines = [
        f"Recipe study: {len(plan.seeds)} seeds ({', '.join(map(str, plan.seeds))}), "
        f"{'each recipe its own epochs' if plan.epochs is None else f'{plan.epochs} epochs'}, "
        f"{plan.input_size} px; calibration and threshold (sensitivity >= {plan.min_sensitivity}) fitted on "
        f"validation only; test = `{plan.test_split}`. Mean ± sd over seeds; `ens` = the seeds' mean logit.",
        "",
        "| recipe | ckpt | val AUC | test AUC | test sens % | test spec % | test acc % | test ECE | "
        "ens test AUC | ens spec % | ens acc % | ens ECE | ens site-calibrated acc / sens / spec % | "
        f"ens AUC - {plan.control or 'control'} (95% CI) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        e = r.get("ensemble")
        ens = (f"{e['test_auc']:.3f} | {100 * e['test_specificity']:.1f} | {100 * e['test_accuracy']:.1f} | "
               f"{e['test_ece']:.3f} | {_site(e)} | {_versus(e)}") if e else "- | - | - | - | - | -"
        lines.append(
            f"| {r['recipe']} | {r['checkpoint']} | {ms(r['val_auc'])} | {ms(r['test_auc'])} | "
            f"{ms(r['test_sensitivity'], True)} | {ms(r['test_specificity'], True)} | "
            f"{ms(r['test_accuracy'], True)} | {ms(r['test_ece'])} | {ens} |"
        )
    return "\n".join(lines) + "\n"


def run_study(plan: StudyPlan, train: bool = True) -> list[dict]:
    if plan.control and plan.control not in plan.recipes:
        raise ValueError(f"the control {plan.control!r} must be one of the study's recipes")
    plan.out.mkdir(parents=True, exist_ok=True)
    if train:
        train_all(plan)
    rows = summarise(plan, score_runs(plan))
    (plan.out / "study.json").write_text(json.dumps(
        {"plan": {k: str(v) if isinstance(v, Path) else v for k, v in plan.__dict__.items()}, "rows": rows},
        indent=2) + "\n")
    table = render(plan, rows)
    (plan.out / "STUDY.md").write_text(table)
    print(table, flush=True)
    return rows
