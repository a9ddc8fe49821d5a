"""The model card for people: Markdown rendered from the JSON card, so both say the same."""

from __future__ import annotations

from training.robustness import format_table


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _interval(values: list[float], pct: bool = True) -> str:
    fmt = _pct if pct else (lambda v: f"{v:.3f}")
    return f"{fmt(values[0])} - {fmt(values[1])}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def render_markdown(card: dict) -> str:
    m = card["validation_metrics"]
    pre = card["preprocessing"]
    data = card["data"]
    cal = card["calibration"]
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        "> Not a medical device. For research and engineering use; every output needs review by a qualified reader.",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Validation (patient-level split of the official training split)",
        "",
        "| metric | value | 95% bootstrap interval |",
        "| --- | --- | --- |",
        f"| ROC AUC | {m['roc_auc']:.4f} | {_interval(m['roc_auc_ci95'], pct=False)} |",
        f"| accuracy | {_pct(m['accuracy'])} | {_interval(m['accuracy_ci95'])} |",
        f"| sensitivity (recall) | {_pct(m['recall'])} | |",
        f"| specificity | {_pct(m['specificity'])} | |",
        f"| precision | {_pct(m['precision'])} | |",
        f"| F1 | {m['f1']:.4f} | |",
        f"| PR AUC | {m['pr_auc']:.4f} | |",
        f"| expected calibration error | {m['ece']:.4f} | |",
        "",
        f"Confusion matrix at threshold {card['threshold']:.4f} (n = {m['n']}): "
        f"TN {tn}, FP {fp}, FN {fn}, TP {tp}.",
        "",
        "The official test split is held out and evaluated independently; no test figure is claimed here.",
        "",
        "## Decision threshold and calibration",
        f"- Threshold **{card['threshold']:.4f}**: {card['threshold_rule']}.",
        f"- Calibration: {cal['method']} (a = {cal['a']:.4f}, b = {cal['b']:.4f}); validation ECE "
        f"{cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after.",
        "",
        "## Data",
        f"- Source: `{data['root']}/{data['split']}` ({data['n_images']} films).",
        f"- Training: {_counts(data['train'])} from {data['train_patients']} patients; validation: "
        f"{_counts(data['validation'])} from {data['validation_patients']} patients (no patient on both sides).",
        "- Kermany, Zhang, Goldbaum (2018), Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0.",
        "",
        "## Preprocessing (read by the services from model_card.json)",
        f"- Chain: {' -> '.join(pre['chain'])}.",
        f"- Input {pre['input_size']}x{pre['input_size']} grey, `{pre['interpolation']}` resize, median kernel "
        f"{pre['median_kernel']}, CLAHE clip {pre['clahe_clip_limit']} on a {pre['clahe_tile_grid']}x"
        f"{pre['clahe_tile_grid']} grid, reduced-size JPEG decoding: {pre['jpeg_reduced_decode']}.",
        "",
        "## Architecture",
        f"- {card['architecture']['summary']}.",
        f"- Filters {card['architecture']['filters']}, {card['parameters']:,} parameters; Grad-CAM layer "
        f"`{card['gradcam_layer']}`.",
        "",
        "## Training",
        f"- Hyper-parameters: `{ {k: v for k, v in card['hyperparameters'].items() if k != 'augmentation'} }`.",
        f"- Augmentation (training batches only, before median + CLAHE): `{card['hyperparameters']['augmentation']}`.",
        f"- {card['training']['epochs_run']} epochs run, best epoch {card['training']['best_epoch']} by validation "
        f"AUC; fit took {card['training']['fit_seconds'] / 60:.1f} min on {card['training']['cpu_count']} CPU cores.",
        "",
        "## Export",
        f"- ONNX opset {card['onnx_opset']}, sha256 `{card['onnx_sha256']}`.",
        f"- Parity onnxruntime vs Keras on {card['parity']['n_images']} validation films: max |diff| "
        f"{card['parity']['max_abs_diff']:.2e} (tolerance {card['parity']['tolerance']:.0e}).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in card['versions'].items())}.",
        "",
        "## Robustness: validation films under simulated acquisition shifts",
        "Each row perturbs every validation film once, before the preprocessing chain, and scores it at the "
        "shipped threshold (see `training/robustness.py`).",
        "",
        format_table(card["robustness"]) if card.get("robustness") else "(not computed)",
        "",
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
    ]
    if card.get("plots"):
        lines += ["## Plots", *[f"![{p}]({p})" for p in card["plots"]], ""]
    return "\n".join(lines)
