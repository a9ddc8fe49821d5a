"""`python -m training ood` and the export's OOD step: features output, fit, figures, files.

For a model folder: add the `features` output to model.onnx if it lacks one (probability checked
bit-identical on the validation films; new sha256 and version "<base>+<sha[:12]>"), score the
real films through the serving chain, fit the checks (`training.ood.fit`), write ood.npz and the
card's `ood` section with pass rates, detection rates per negative kind and the measured cost,
and regenerate MODEL_CARD.md. model.keras is not touched.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.imaging.colour import colour_saturation
from app.model.card import CARD_FILE, restamp, sha256_of
from app.model.ood import OOD_FILE, OodDetector, dicom_header_reasons
from app.model.session import open_session
from training.data import list_samples, patient_id, read_split_list, split_by_patient
from training.onnx_graph.features import (
    DEFAULT_FEATURE_LAYERS,
    FEATURES_OUTPUT,
    has_features_output,
    with_features_output,
)
from training.ood import negatives
from training.ood.data import ChainRunner, Scored
from training.ood.fit import FeaturesInfo, FilmSets, cross_validated_false_alarms, fit, pass_rates


def film_sets_from_card(card: dict, data_root: Path, val16_dir: Path | None) -> FilmSets:
    """The card's patient split of `data_root/<split>` (recomputed from its seed and fraction), test_dev, val16."""
    hp = card["hyperparameters"]
    train, val = split_by_patient(list_samples(data_root / card["data"]["split"]), hp["val_fraction"], hp["split_seed"])
    for name, samples in (("train", train), ("validation", val)):
        counts = {c: sum(1 for s in samples if s.label == i) for i, c in enumerate(("NORMAL", "PNEUMONIA"))}
        if counts != card["data"][name]:
            raise ValueError(f"the recomputed {name} split {counts} is not the card's {card['data'][name]}")
    return _with_extra_sets(train, val, data_root, val16_dir)


def film_sets_from_run(run_dir: Path, data_root: Path, val16_dir: Path | None = None) -> FilmSets:
    """A run's own split lists (splits/train.txt, val.txt), test_dev and val16 when they exist."""
    train = read_split_list(run_dir / "splits" / "train.txt", data_root)
    val = read_split_list(run_dir / "splits" / "val.txt", data_root)
    return _with_extra_sets(train, val, data_root, val16_dir)


def _with_extra_sets(train: list, val: list, data_root: Path, val16_dir: Path | None) -> FilmSets:
    test_dev = data_root / "test_dev"
    if val16_dir is None:
        val16_dir = data_root.parent / "val16_fullres"
    return FilmSets(
        train=[s.path for s in train], validation=[s.path for s in val],
        test_dev=[s.path for s in list_samples(test_dev)] if test_dev.is_dir() else [],
        val16=[s.path for s in list_samples(val16_dir)] if val16_dir.is_dir() else [],
    )


def ensure_features_output(model_dir: Path, check_films: list[Path]) -> dict | None:
    """Add the `features` output to the model's ONNX file if it has none; update hash, version and card.

    Returns what changed (None when nothing did). Refuses if `probability` changes on any check film.
    """
    import onnx

    card_path = model_dir / CARD_FILE
    card = json.loads(card_path.read_text())
    onnx_path = model_dir / card["files"]["onnx"]
    model = onnx.load(str(onnx_path))
    if has_features_output(model):
        return None
    runner = ChainRunner(model_dir, features_name=None)
    enhanced = runner.score_files(check_films).enhanced
    batch = (enhanced.astype(np.float32) * np.float32(1 / 255))[..., np.newaxis]
    before = _run(open_session(onnx_path), batch, ["probability"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        onnx.save(with_features_output(model, DEFAULT_FEATURE_LAYERS), str(tmp_path))
        after, features = _run(open_session(tmp_path), batch, ["probability", FEATURES_OUTPUT])
        if not np.array_equal(before, after):
            raise RuntimeError(f"adding the features output changed probability (max |diff| "
                               f"{np.max(np.abs(before - after)):.3e}); nothing written")
        tmp_path.replace(onnx_path)
    parent = restamp(card, onnx_path)
    card["output"]["features"] = features_card_entry(int(features.shape[1]))
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return {"parent_version": parent, "probability_bit_identical_on": int(len(batch)), "dim": int(features.shape[1])}


def features_card_entry(dim: int) -> dict:
    return {"name": FEATURES_OUTPUT, "dim": dim, "layers": list(DEFAULT_FEATURE_LAYERS),
            "meaning": f"global average of each member's {', '.join(DEFAULT_FEATURE_LAYERS)} max-pool outputs, side by "
                       "side, for the out-of-distribution check"}


def _run(session, batch: np.ndarray, names: list[str], size: int = 64) -> list[np.ndarray]:
    parts = [session.run(names, {"image": batch[i:i + size]}) for i in range(0, len(batch), size)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]


# ---- figures ------------------------------------------------------------------------------------------

def evaluate_negatives(
    runner: ChainRunner, detector: OodDetector, films: list[bytes], per_kind: int, per_film_kind: int, seed: int = 0,
) -> list[dict]:
    """Detection per negative kind. An upload counts as detected when the decoder rejects it (no prediction),
    the image checks flag it, or its DICOM header does."""
    rows = []
    for kind in (*negatives.DESIGN_KINDS, *negatives.HELD_OUT_KINDS):
        made = negatives.generate_for_figure(kind, per_kind, per_film_kind, films, seed)
        scored = runner.score((x.name, x.data) for x in made)
        results = detector.check_batch(scored.features, scored.enhanced, scored.saturation) if len(scored) else []
        header = [bool(dicom_header_reasons(t)) for t in scored.tags]
        image = [not r.in_distribution for r in results]
        total = len(scored) + len(scored.rejected)
        detected = len(scored.rejected) + sum(a or b for a, b in zip(image, header, strict=True))
        by_check = Counter(c for r in results for c, v in r.checks.items() if v > 1.0)
        rows.append({
            "kind": kind, "held_out": kind in negatives.HELD_OUT_KINDS, "n": total,
            "rejected_by_decoder": len(scored.rejected), "flagged_by_image": int(sum(image)),
            "flagged_by_header": int(sum(header)), "detected": int(detected),
            "detection_rate": detected / total if total else None,
            "image_detection_rate": float(np.mean(image)) if image else None,
            "median_score": float(np.median([r.score for r in results])) if results else None,
            "flagging_checks": dict(sorted(by_check.items())),
        })
    return rows


def measure_cost(detector: OodDetector, scored: Scored, runner: ChainRunner, repeats: int = 200) -> dict:
    """Milliseconds: the checks per image (alone and in a batch of 16), the colour measure of a 12 Mpx
    photo, and one ONNX run of one image with and without the features output."""
    def best(fn, k: int = repeats) -> float:
        times = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))

    f, e, s = scored.features, scored.enhanced, scored.saturation
    photo = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    batch = (e[:1].astype(np.float32) / 255)[..., np.newaxis]
    session, card = runner.session, runner.card
    return {
        "check_one_image_ms": best(lambda: detector.check(f[0], e[0], s[0])),
        "check_per_image_in_batch_of_16_ms": best(lambda: detector.check_batch(f[:16], e[:16], s[:16]), 50) / 16,
        "colour_saturation_12mpx_ms": best(lambda: colour_saturation(photo), 50),
        "onnx_one_image_probability_only_ms": best(lambda: session.run([card.output_name], {"image": batch}), 30),
        "onnx_one_image_with_features_ms": best(
            lambda: session.run([card.output_name, FEATURES_OUTPUT], {"image": batch}), 30),
        "note": "single thread of a shared 2-core CPU; medians",
    }


def _scored_sets(runner: ChainRunner, sets: FilmSets) -> dict[str, Scored]:
    out = {"train": runner.score_files(sets.train), "validation": runner.score_files(sets.validation)}
    if sets.test_dev:
        out["test_dev"] = runner.score_files(sets.test_dev)
    if sets.val16:
        out["val16"] = runner.score_files(sets.val16)
    return out


def fit_model_dir(
    model_dir: Path, sets: FilmSets, per_kind: int = 40, per_film_kind: int = 200, cost: bool = True,
) -> tuple[dict, dict[str, Scored]]:
    """Add features if needed, fit, measure, write ood.npz + card + MODEL_CARD.md; return (card, scored sets)."""
    from training.card import render_markdown

    model_dir = Path(model_dir)
    added = ensure_features_output(model_dir, sets.validation)
    card = json.loads((model_dir / CARD_FILE).read_text())
    info = card["output"]["features"]
    runner = ChainRunner(model_dir, info["name"])
    scored = _scored_sets(runner, sets)
    calibration = {k: scored[k] for k in ("validation", "test_dev") if k in scored}
    section, arrays = fit(scored["train"], calibration, FeaturesInfo(info["name"], tuple(info["layers"]), info["dim"]))
    np.savez(model_dir / OOD_FILE, **arrays)
    section["sha256"] = sha256_of(model_dir / OOD_FILE)
    section["threshold_sets"] = list(calibration)
    detector = OodDetector(section, arrays)
    section["pass_rates"] = pass_rates(detector, {k: v for k, v in scored.items() if k != "train"})
    # In-sample for the two Gaussians, out of sample for the thresholds: a larger, optimistic check.
    section["pass_rates_training_films"] = pass_rates(detector, {"train": scored["train"]})["train"]
    if "test_dev" in scored:
        section["test_dev_cross_validated"] = cross_validated_false_alarms(
            section, arrays, scored["validation"], scored["test_dev"],
            [patient_id(name) for name in scored["test_dev"].names])
    films = [p.read_bytes() for p in sets.validation]
    section["detection"] = evaluate_negatives(runner, detector, films, per_kind, per_film_kind)
    section["held_out_kinds"] = list(negatives.HELD_OUT_KINDS)
    section["design_kinds"] = list(negatives.DESIGN_KINDS)
    if cost:
        section["cost_ms"] = measure_cost(detector, scored["validation"], runner)
    section["fitted"] = datetime.now(UTC).isoformat(timespec="seconds")
    added = added or (card.get("ood") or {}).get("features_added")
    if added:
        section["features_added"] = added
    card["ood"] = section
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (model_dir / "MODEL_CARD.md").write_text(render_markdown(card))
    return card, scored


def summary(card: Mapping) -> dict:
    """What the CLI prints."""
    ood = card["ood"]
    return {
        "version": card["version"],
        "thresholds": {k: v["threshold"] for k, v in ood["checks"].items()},
        "pass_rates": {k: v["pass_rate"] for k, v in ood["pass_rates"].items()},
        "test_dev_cross_validated": ood.get("test_dev_cross_validated"),
        "detection": {r["kind"]: r["detection_rate"] for r in ood["detection"]},
        "cost_ms": ood.get("cost_ms"),
    }


def features_dim(onnx_path: Path, input_size: int) -> int:
    """Width of the `features` output (one run on a blank image)."""
    session = open_session(onnx_path)
    blank = np.zeros((1, input_size, input_size, 1), np.float32)
    return int(session.run([FEATURES_OUTPUT], {"image": blank})[0].shape[1])


def run_cli(
    model_dir: Path, data: Path, val16: Path | None, out: Path | None, report: Path | None, per_kind: int,
    per_film_kind: int,
) -> dict:
    """`python -m training ood`: fit in place (or in a copy at `out`), write the report; return a summary."""
    import shutil

    from training.ood.design import compare_layers
    from training.ood.report import render_report

    model_dir = Path(model_dir)
    if out is not None and Path(out).resolve() != model_dir.resolve():
        shutil.copytree(model_dir, out, dirs_exist_ok=True)
        model_dir = Path(out)
    card = json.loads((model_dir / CARD_FILE).read_text())
    sets = film_sets_from_card(card, Path(data), val16)
    card, scored = fit_model_dir(model_dir, sets, per_kind, per_film_kind)
    if report is not None and str(report).lower() != "none":
        runner = ChainRunner(model_dir, card["output"]["features"]["name"])
        films = [p.read_bytes() for p in sets.validation]
        design = compare_layers(runner, scored, films, per_kind, per_film_kind)
        command = f"python -m training ood --model {model_dir} --data {data}"
        Path(report).write_text(render_report(card, design, command))
    return summary(card)
