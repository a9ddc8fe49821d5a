"""The model card for people: Markdown rendered from the JSON card, so both say the same."""

from __future__ import annotations

from training.ood.report import card_section as ood_section
from training.robustness import format_table


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _interval(values: list[float], pct: bool = True) -> str:
    fmt = _pct if pct else (lambda v: f"{v:.3f}")
    return f"{fmt(values[0])} - {fmt(values[1])}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def _site_section(card: dict) -> list[str]:
    site = card["site_calibration"]
    cal_set = site["calibration_set"]
    before, after, cv = site["before"], site["after_in_sample"], site["after_cross_validated"]

    def row(name: str, r: dict) -> str:
        return (f"| {name} | {_pct(r['accuracy'])} | {r.get('roc_auc', float('nan')):.4f} | {_pct(r['recall'])} | "
                f"{_pct(r['specificity'])} | {r['ece']:.4f} | {r['threshold']:.4f} |")

    return [
        "## Site calibration (this version)",
        f"Version {card['version']} is {site['parent_version']} adapted to the site films `{cal_set['name']}` "
        f"({cal_set['n']} films: {cal_set['NORMAL']} NORMAL, {cal_set['PNEUMONIA']} PNEUMONIA) with "
        f"`python -m training calibrate`, without retraining: {site['method']} "
        f"(a = {site['a']:.4f}, b = {site['b']:.4f}), then the threshold rule above.",
        "",
        "| on the site films | accuracy | ROC AUC | sensitivity | specificity | ECE | threshold |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        row("before (parent, validation threshold)", before),
        row("after, in-sample (fitted on these films)", after),
        f"| after, patient-level 2-fold estimate ({cv['repeats']} splits) | {_pct(cv['accuracy'])} | - | "
        f"{_pct(cv['sensitivity'])} | {_pct(cv['specificity'])} | {cv['ece']:.4f} | refitted per split |",
        "",
        f"Accuracy 95% bootstrap interval after (in-sample): {_interval(after['accuracy_ci95'])}; ROC AUC "
        f"{_interval(after['roc_auc_ci95'], pct=False)}. The in-sample row is optimistic; the 2-fold row fits "
        "on half the patients and measures on the other half (ranges: accuracy "
        f"{_interval(cv['accuracy_range'])}, specificity {_interval(cv['specificity_range'])}).",
        "",
    ]


def _zeroed_line(parity: dict) -> list[str]:
    """Cards written before the export counted them have no such entry."""
    zeroed = parity.get("subnormal_weights_zeroed")
    if zeroed is None:
        return []
    return [f"- Subnormal weights (below 1.2e-38) set to zero in the ONNX file at export: {zeroed} "
            "(no output changes; onnxruntime would take the CPU's slow path for them, "
            "`training/onnx_graph/denormals.py`)."]


def _gradcam_output_lines(card: dict) -> list[str]:
    entry = (card.get("output") or {}).get("gradcam")
    if not entry:
        return []
    lines = [f"- Output `{entry['name']}`: the activations of {', '.join(f'`{n}`' for n in entry['layers'])} "
             f"({sum(entry['channels'])} x {entry['grid'][0]} x {entry['grid'][1]}, NCHW); the API sends them to "
             "the Grad-CAM sidecar, which runs only the rest of the network (`training/onnx_graph/gradcam.py`)."]
    added = card.get("gradcam_output_added")
    if added:
        lines.append(f"- Version {card['version']} is the ONNX file of {added['parent_version']} with that output "
                     "added by `python -m training add-gradcam-output`: every other output bit-identical on "
                     f"{added['outputs_bit_identical_on']} films; model.keras unchanged.")
    return lines


def _denormals_section(card: dict) -> list[str]:
    flushed = card.get("onnx_denormals_flushed")
    if not flushed:
        return []
    return [
        "## ONNX weights",
        f"Version {card['version']} is the ONNX file of {flushed['parent_version']} with its {flushed['weights']} "
        "subnormal weights (below 1.2e-38) set to zero by `python -m training flush-denormals`: every output "
        f"bit-identical on {flushed['outputs_bit_identical_on']} films, and onnxruntime no longer takes the CPU's "
        "slow path for them (`training/onnx_graph/denormals.py`). model.keras is unchanged.",
        "",
    ]


def _members_section(card: dict) -> list[str]:
    members = card.get("members") or []
    if not members:
        return []
    lines = [
        "## Members",
        "| member | recipe | seed | epochs run / planned | best epoch | fit time | backend | best val AUC |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for k, m in enumerate(members, start=1):
        lines.append(
            f"| m{k} | {m['recipe']} | {m['seed']} | {m['epochs_run']} / {m['epochs_planned']} | {m['best_epoch']} | "
            f"{(m['fit_seconds'] or 0) / 60:.1f} min | {m['keras_backend']} ({m['cpu_count']} CPUs) | "
            f"{m['best_validation_auc']:.4f} |"
        )
    return [*lines, ""]


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
        "## Validation (patient-level split of the official training split, threshold chosen on it)",
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
        f"Confusion matrix at threshold {m['threshold']:.4f} (n = {m['n']}): "
        f"TN {tn}, FP {fp}, FN {fn}, TP {tp}.",
        "",
        "The official test split is held out and evaluated independently; no figure on it is claimed here.",
        "",
        *(_site_section(card) if card.get("site_calibration") else []),
        *_denormals_section(card),
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
        f"- Input {pre['input_size']}x{pre['input_size']} grey, `{pre['interpolation']}` resize, central "
        f"{100 * pre.get('border_crop', 1.0):.0f}% of each side kept, median kernel "
        f"{pre['median_kernel']}, CLAHE clip {pre['clahe_clip_limit']} on a {pre['clahe_tile_grid']}x"
        f"{pre['clahe_tile_grid']} grid, reduced-size JPEG decoding: {pre['jpeg_reduced_decode']}.",
        "",
        "## Architecture",
        f"- {card['architecture']['summary']}.",
        f"- Filters {card['architecture']['filters']}, {card['parameters']:,} parameters; Grad-CAM layer "
        f"`{card['gradcam_layer']}`.",
        "",
        *_members_section(card),
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
        *_zeroed_line(card["parity"]),
        *_gradcam_output_lines(card),
        f"- Versions: {', '.join(f'{k} {v}' for k, v in card['versions'].items())}.",
        "",
        "## Robustness: validation films under simulated acquisition shifts",
        "Each row perturbs every validation film once, before the preprocessing chain, and scores it at the "
        "shipped threshold (see `training/robustness.py`).",
        "",
        format_table(card["robustness"]) if card.get("robustness") else "(not computed)",
        "",
        *(ood_section(card) if card.get("ood") else []),
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
    ]
    if card.get("plots"):
        lines += ["## Plots", *[f"![{p}]({p})" for p in card["plots"]], ""]
    return "\n".join(lines)
