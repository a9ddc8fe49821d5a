"""Diagnosis of the train-to-test shift (`python -m training shift`): figures and tables for
`training/SHIFT.md`.

Compares the films of validation (a patient-level split of train) and of `test_dev` (half
of the official test split), and two models on them: a reference model (e.g. the seed's)
and the shipped one. Writes into `--out`:
  framing.png         the test normals each model scores highest and lowest, train normals, train pneumonia
  histograms.png      grey-level histograms before and after CLAHE, per group
  gradcam.png         Grad-CAM of both models on the reference model's worst false positives
  shift.json          image properties per group, framing sensitivity, pixel shifts, resize paths (the tables
                      of SHIFT.md)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from app.imaging.preprocess import Preprocessor, to_batch
from app.model.card import ModelCard, load_model_card
from app.model.session import open_session
from training import metrics
from training.data import Sample, list_samples, read_split_list

Transform = Callable[[np.ndarray], np.ndarray]


def _scale_axis(factor: float, axis: int) -> Transform:
    """Scale one axis of a square film; pad (black) when shrinking, centre-crop when stretching."""

    def apply(img: np.ndarray) -> np.ndarray:
        h, w = img.shape
        size = (w, round(h * factor)) if axis == 0 else (round(w * factor), h)
        scaled = cv2.resize(img, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        out = np.zeros_like(img)
        if factor < 1:
            y0, x0 = (h - scaled.shape[0]) // 2, (w - scaled.shape[1]) // 2
            out[y0:y0 + scaled.shape[0], x0:x0 + scaled.shape[1]] = scaled
            return out
        y0, x0 = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
        return np.ascontiguousarray(scaled[y0:y0 + h, x0:x0 + w])

    return apply


def _centre_crop(fraction: float) -> Transform:
    def apply(img: np.ndarray) -> np.ndarray:
        h, w = img.shape
        ch, cw = round(h * fraction), round(w * fraction)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)

    return apply


def _translate(dx: int, dy: int) -> Transform:
    """Move a film by whole pixels; the edge rows and columns fill the gap (no black band to notice)."""
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return lambda img: cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


FRAMINGS: dict[str, Transform] = {
    "as is": lambda img: img,
    "y-scale 0.85 (shrink, pad)": _scale_axis(0.85, 0),
    "y-scale 1.15 (stretch, crop)": _scale_axis(1.15, 0),
    "x-scale 0.85 (shrink, pad)": _scale_axis(0.85, 1),
    "centre crop 90%": _centre_crop(0.9),
    "horizontal flip": lambda img: np.ascontiguousarray(img[:, ::-1]),
}


class Scorer:
    """A model folder's ONNX model behind its card's chain."""

    def __init__(self, model_dir: Path) -> None:
        self.dir = Path(model_dir)
        self.card: ModelCard = load_model_card(model_dir)
        self.session = open_session(self.dir / self.card.onnx_file)
        self.pre = Preprocessor(self.card.preprocessing)

    def gray(self, films: list[np.ndarray], transform: Transform | None = None) -> np.ndarray:
        batch = to_batch([self.pre.from_gray(transform(f) if transform else f) for f in films])
        return np.concatenate([self.session.run(None, {self.card.input_name: batch[i:i + 64]})[0].reshape(-1)
                               for i in range(0, len(batch), 64)])

    def files(self, data: list[bytes]) -> np.ndarray:
        batch = to_batch([self.pre.from_bytes(d) for d in data])
        return self.session.run(None, {self.card.input_name: batch})[0].reshape(-1)


def load_films(samples: list[Sample]) -> list[np.ndarray]:
    """The films as stored, uint8 grey; an unreadable file is an error, not a gap."""
    films = [cv2.imread(str(s.path), cv2.IMREAD_GRAYSCALE) for s in samples]
    missing = [str(s.path) for s, film in zip(samples, films, strict=True) if film is None]
    if missing:
        raise FileNotFoundError(f"cannot read {missing[:3]}")
    return [film for film in films if film is not None]


def image_properties(films: list[np.ndarray], pre: Preprocessor) -> dict:
    """Means over a group of films: intensity, contrast, sharpness, noise, borders, framing proxies."""
    rows = []
    for img in films:
        f = img.astype(np.float32)
        h, w = img.shape
        band_h, band_w = h // 10, w // 10
        enhanced = pre.enhance(pre.resize(img))
        rows.append({
            "mean": f.mean(), "std": f.std(),
            "laplacian_var": cv2.Laplacian(f, cv2.CV_32F).var(),
            "noise_mad": float(np.median(np.abs(f - cv2.medianBlur(img, 3).astype(np.float32)))),
            "border_mean": float(np.concatenate([f[:band_h].ravel(), f[-band_h:].ravel(), f[:, :band_w].ravel(),
                                                 f[:, -band_w:].ravel()]).mean()),
            "top_band_mean": float(f[:band_h].mean()),
            "bright_fraction": float((img > cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]).mean()),
            "clahe_mean": float(enhanced.mean()), "clahe_std": float(enhanced.std()),
        })
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def framing_sensitivity(scorer: Scorer, films: list[np.ndarray], labels: np.ndarray) -> list[dict]:
    out = []
    for name, transform in FRAMINGS.items():
        probs = scorer.gray(films, transform)
        m = metrics.threshold_metrics(labels, probs, scorer.card.threshold)
        out.append({"framing": name, "roc_auc": metrics.roc_auc(labels, probs), "specificity": m["specificity"],
                    "sensitivity": m["sensitivity"], "normal_mean_p": float(probs[labels == 0].mean())})
    return out


def pixel_shift_stability(scorer: Scorer, films: list[np.ndarray], pixels: tuple[int, ...] = (1, 2, 3)) -> list[dict]:
    """How far each film's answer moves when the film is moved by a few pixels, in each of four directions.

    A film framed a pixel apart is the same film; a CNN whose stride-2 pools alias can still answer it
    differently (Azulay & Weiss 2019). Per shift: the mean change, the 95th percentile and the largest of
    each film's worst direction, and the share of films whose label at the card's threshold flips."""
    base = scorer.gray(films)
    rows = []
    for k in pixels:
        moved = np.stack([scorer.gray(films, _translate(dx, dy)) for dx, dy in ((k, 0), (0, k), (-k, 0), (0, -k))])
        change = np.abs(moved - base)  # directions x films
        worst = change.max(axis=0)
        flipped = ((moved >= scorer.card.threshold) != (base >= scorer.card.threshold)).any(axis=0)
        rows.append({"pixels": k, "mean_abs_change": float(change.mean()),
                     "worst_direction_p95": float(np.quantile(worst, 0.95)), "max_abs_change": float(worst.max()),
                     "label_flip_rate": float(flipped.mean())})
    return rows


def resize_paths(scorer: Scorer, paths: list[Path]) -> dict:
    """Largest probability spread over upload paths of one full-resolution film."""
    from PIL import Image

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    size = scorer.card.preprocessing.input_size
    names = ["JPEG", "PNG of the full decode", "PNG, Pillow bilinear to model size",
             "PNG, OpenCV area to model size", "PNG, Pillow bicubic to model size"]
    spreads: dict[str, list[float]] = {name: [] for name in names[1:]}
    for path in paths:
        original = path.read_bytes()
        decoded = Image.open(io.BytesIO(original)).convert("L")
        arr = np.asarray(decoded)
        variants = [original, png(decoded), png(decoded.resize((size, size), Image.Resampling.BILINEAR)),
                    png(Image.fromarray(cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA))),
                    png(decoded.resize((size, size), Image.Resampling.BICUBIC))]
        probs = [float(scorer.files([v])[0]) for v in variants]
        for name, p in zip(names[1:], probs[1:], strict=True):
            spreads[name].append(abs(p - probs[0]))
    return {name: {"max_abs_diff_vs_jpeg": float(np.max(v)), "mean_abs_diff_vs_jpeg": float(np.mean(v))}
            for name, v in spreads.items()}


def stability_report(model_dir: Path, data: Path, split: str = "test_dev") -> dict:
    """One model's steadiness: pixel shifts and re-framings of `split`'s films, and other resizers of the
    full-resolution films in `<data>/../val16_fullres` (the tables of SHIFT.md sections 1, 4 and 6)."""
    scorer = Scorer(model_dir)
    samples = list_samples(data / split)
    films, labels = load_films(samples), np.array([s.label for s in samples])
    full_res = sorted((data.parent / "val16_fullres").glob("*/*.jpeg"))
    return {"model": scorer.card.version, "threshold": scorer.card.threshold, "split": split, "films": len(films),
            "pixel_shifts": pixel_shift_stability(scorer, films),
            "framing_sensitivity": framing_sensitivity(scorer, films, labels),
            "resize_paths": resize_paths(scorer, full_res) if full_res else None}


def _montage(rows: list[list[np.ndarray]], labels: list[str], path: Path, tile: int = 150) -> None:
    strips = []
    for label, images in zip(labels, rows, strict=True):
        strip = np.hstack([cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA) for img in images])
        banner = np.full((22, strip.shape[1]), 255, np.uint8)
        cv2.putText(banner, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
        strips += [banner, strip]
    cv2.imwrite(str(path), np.vstack(strips))


def _histograms(groups: dict[str, list[np.ndarray]], pre: Preprocessor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, films in groups.items():
        raw = np.concatenate([pre.resize(f).ravel() for f in films])
        enhanced = np.concatenate([pre.enhance(pre.resize(f)).ravel() for f in films])
        axes[0].hist(raw, bins=64, range=(0, 255), density=True, histtype="step", label=name)
        axes[1].hist(enhanced, bins=64, range=(0, 255), density=True, histtype="step", label=name)
    axes[0].set_title("grey levels at model size, before CLAHE")
    axes[1].set_title("after median filter + CLAHE (what the model sees)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gradcam_figure(scorers: list[Scorer], films: list[np.ndarray], path: Path, tile: int = 180) -> None:
    """Row 1: the films; then one row per model: its Grad-CAM overlay for the label it gives."""
    import keras

    from app.imaging.overlay import blend
    from app.sidecar.gradcam import GradCam

    rows = [[cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in films]]
    for scorer in scorers:
        model = keras.models.load_model(scorer.dir / scorer.card.keras_file, compile=False)
        cam = GradCam(model, scorer.card.gradcam_layers, scorer.card.threshold, jit_compile=False)
        framed = [scorer.pre.frame(f) for f in films]  # (model input before enhancement, the part it shows)
        rows.append([blend(f, cam.compute(scorer.pre.from_framed(square)).heatmap, view=view)
                     for f, (square, view) in zip(films, framed, strict=True)])
    cv2.imwrite(str(path), np.vstack([np.hstack([cv2.resize(img, (tile, tile)) for img in row]) for row in rows]))


def run(data: Path, reference: Path, shipped: Path, out: Path, val_split_list: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    scorers = [Scorer(reference), Scorer(shipped)]
    test = list_samples(data / "test_dev")
    test_films, test_labels = load_films(test), np.array([s.label for s in test])
    train_samples = list_samples(data / "train")
    rng = np.random.default_rng(0)
    train_normal = [s for s in train_samples if s.label == 0]
    train_pneu = [s for s in train_samples if s.label == 1]
    val = read_split_list(val_split_list, data) if val_split_list else [
        train_normal[i] for i in rng.choice(len(train_normal), 200, replace=False)]
    val_normal_films = load_films([s for s in val if s.label == 0])

    ref_probs = scorers[0].gray(test_films)
    normal_idx = np.where(test_labels == 0)[0]
    order = normal_idx[np.argsort(-ref_probs[normal_idx])]
    high = [test_films[i] for i in order if ref_probs[i] >= scorers[0].card.threshold]
    low = [test_films[i] for i in order if ref_probs[i] < scorers[0].card.threshold]
    pre = scorers[1].pre
    groups = {
        f"validation normals (n={len(val_normal_films)})": val_normal_films,
        f"test_dev normals the reference calls PNEUMONIA (n={len(high)})": high,
        f"test_dev normals the reference calls NORMAL (n={len(low)})": low,
        "train pneumonia (200 at random)": load_films([train_pneu[i] for i in rng.choice(len(train_pneu), 200, False)]),
    }
    report: dict = {"reference": scorers[0].card.version, "shipped": scorers[1].card.version}
    report["properties"] = {name: image_properties(films, pre) for name, films in groups.items()}
    _histograms(groups, pre, out / "histograms.png")
    _montage(
        [[test_films[i] for i in order[:8]], [test_films[i] for i in order[-8:]],
         load_films([train_normal[i] for i in rng.choice(len(train_normal), 8, False)]),
         load_films([train_pneu[i] for i in rng.choice(len(train_pneu), 8, False)])],
        ["test_dev normals the reference model scores highest", "test_dev normals it scores lowest",
         "train normals (random)", "train pneumonia (random)"],
        out / "framing.png",
    )
    report["framing_sensitivity"] = {
        s.card.version: framing_sensitivity(s, test_films, test_labels) for s in scorers}
    report["pixel_shifts"] = {s.card.version: pixel_shift_stability(s, test_films) for s in scorers}
    full_res = sorted((data.parent / "val16_fullres").glob("*/*.jpeg"))
    report["resize_paths"] = {s.card.version: resize_paths(s, full_res) for s in scorers}
    _gradcam_figure(scorers, [test_films[i] for i in order[:6]], out / "gradcam.png")
    (out / "shift.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
