"""Results -> markdown: the machine, every table, the ratios and the targets."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata

from benchmarks.common import REPO, cpu_count

PACKAGES = ["numpy", "opencv-python-headless", "onnxruntime", "tensorflow-cpu", "keras", "fastapi", "starlette",
            "granian", "uvicorn", "httptools", "uvloop"]

TARGETS = {
    "predict_p50_c1_ms": 15.0,
    "gradcam_p50_c1_ms": 40.0,
    "vs_peer": 10.0,
    "api_rss_mb": 400.0,
    "sidecar_rss_mb": 1536.0,
}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "cpu": cpu, "cores": cpu_count(), "logical_cpus_total": os.cpu_count(), "memory_gb": mem_gb,
        "kernel": platform.release(), "python": platform.python_version(), "versions": versions, "commit": commit,
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _f(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return [_row(header), _row(align), *(_row(r) for r in rows)]


def _by_conc(rows: list[dict]) -> dict[int, dict]:
    return {r["concurrency"]: r for r in rows}


def ratios(results: dict) -> dict:
    predict, gradcam, peer = (_by_conc(results[k]) for k in ("load_predict", "load_gradcam", "load_peer"))
    ceiling = results["ceiling"]["ceiling_images_per_s"]
    top = max(predict)
    best_service = max(r["throughput_rps"] for r in predict.values())
    best_peer = max(r["throughput_rps"] for r in peer.values())
    same = peer.get(top, {}).get("throughput_rps") or 0.0
    paired = results.get("paired")
    return {
        "top_concurrency": top,
        # Measured back to back with the ceiling when the suite could (see `_paired`); else from the series.
        "service_vs_ceiling": paired["median_ratio"] if paired else predict[top]["throughput_rps"] / ceiling,
        "service_vs_ceiling_series": predict[top]["throughput_rps"] / ceiling,
        "service_vs_peer_same_concurrency": predict[top]["throughput_rps"] / same if same else None,
        "best_service_vs_best_peer": best_service / best_peer if best_peer else None,
        "predict_p50_c1": predict.get(1, {}).get("p50_ms"),
        "gradcam_p50_c1": gradcam.get(1, {}).get("p50_ms"),
        "errors_predict": sum(r["errors"] for r in predict.values()),
        "errors_gradcam": sum(r["errors"] for r in gradcam.values()),
    }


def _spread(paired: dict | None) -> str:
    if not paired or len(paired["rounds"]) < 2:
        return ""
    ratios = [p["ratio"] for p in paired["rounds"]]
    return f" (median of {len(ratios)} rounds: {100 * min(ratios):.0f}-{100 * max(ratios):.0f}%)"


def targets(results: dict, r: dict) -> list[tuple[str, str, bool | None]]:
    """(what, measured, met); `met` is None for a figure reported without a target."""
    memory = results["memory"]
    api_rss, sidecar_rss = memory.get("api_peak_rss_mb"), memory.get("sidecar_peak_rss_mb")
    peer_ratio = r["service_vs_peer_same_concurrency"]
    return [
        ("`/predict` no Grad-CAM: p50 <= 15 ms at concurrency 1", f"{_f(r['predict_p50_c1'])} ms",
         r["predict_p50_c1"] is not None and r["predict_p50_c1"] <= TARGETS["predict_p50_c1_ms"]),
        # The >= 80% target was retired (issue 13): the last points sat inside this VM's run-to-run spread.
        (f"`/predict` no Grad-CAM: throughput at concurrency {r['top_concurrency']} / the in-process ceiling",
         f"{100 * r['service_vs_ceiling']:.0f}%" + _spread(results.get("paired")), None),
        ("`/predict` no Grad-CAM: zero errors", str(r["errors_predict"]), r["errors_predict"] == 0),
        ("`/predict` with Grad-CAM: p50 <= 40 ms at concurrency 1", f"{_f(r['gradcam_p50_c1'])} ms",
         r["gradcam_p50_c1"] is not None and r["gradcam_p50_c1"] <= TARGETS["gradcam_p50_c1_ms"]),
        ("`/predict` with Grad-CAM: zero errors", str(r["errors_gradcam"]), r["errors_gradcam"] == 0),
        (f"throughput >= 10x the naive Keras peer (both at concurrency {r['top_concurrency']})",
         f"{_f(peer_ratio)}x", peer_ratio is not None and peer_ratio >= TARGETS["vs_peer"]),
        ("API process peak RSS <= 400 MB", f"{_f(api_rss, 0)} MB" + (
            f" (largest worker; all API processes together {_f(memory['api_peak_rss_total_mb'], 0)} MB)"
            if memory.get("api_peak_rss_total_mb") else ""),
         api_rss is not None and api_rss <= TARGETS["api_rss_mb"]),
        ("sidecar peak RSS <= 1.5 GB", f"{_f(sidecar_rss, 0)} MB",
         sidecar_rss is not None and sidecar_rss <= TARGETS["sidecar_rss_mb"]),
    ]


def render(results: dict) -> str:
    m = results.get("machine") or machine()
    results["machine"] = m
    r = ratios(results)
    results["ratios"] = r
    model = results.get("model") or {}
    info = results.get("model_info") or {}
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. How the suite works and what was",
        "changed to meet the targets: [README.md](README.md).",
        "",
    ]
    if results.get("busy_at_start"):
        lines += ["**Other processes were using the CPU when this run started (load average "
                  f"{results.get('loadavg_at_start')}); its timings are not clean:**", ""]
        lines += [f"- `{b}`" for b in results["busy_at_start"]] + [""]
    if results.get("busy_at_end"):
        lines += ["**Other processes were using the CPU when this run ended; its timings are not clean:**", ""]
        lines += [f"- `{b}`" for b in results["busy_at_end"]] + [""]
    if results.get("quick"):
        lines += ["**QUICK RUN (`--quick`): tiny counts, not a measurement.**", ""]
    v = m["versions"]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores usable ({m['logical_cpus_total']} logical CPUs), "
        f"{_f(m['memory_gb'])} GB RAM; Linux {m['kernel']}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Commit {m['commit']}, {m['date_utc']}; suite ran in {results.get('suite_seconds', 0):.0f} s",
        f"- Model {model.get('model_version', '?')} ({model_input_text(info)}), from `{results['model_dir']}`",
        "- Input: the 16 full-resolution X-rays of `../shared/data/val16_fullres` (JPEG, 968x592 to 1776x1416)",
        "- Services as the images run them, default settings: the API as `python -m app.api` (granian, one worker"
        " process per core), the sidecar as `python -m uvicorn app.sidecar.main:app` (one process)" + _as_run(results),
        "",
        "## Targets",
        "",
    ]
    lines += _table(["target", "measured", "met"],
                    [[name, value, "reported" if ok is None else "yes" if ok else "**NO**"]
                     for name, value, ok in targets(results, r)])

    stages = results["stages"]
    lines += ["", f"## 1. Stages in process ({stages['images']} uploads x {stages['reps']} passes, one thread)", ""]
    lines += _table(["stage", "median ms", "p95 ms"],
                    [[s["label"], _f(s["median"], 2), _f(s["p95"], 2)] for s in stages["stages"]])

    rt = results["runtimes"]
    lines += ["", "## 2. Model runtimes, same process, same inputs", ""]
    rows = []
    for key, label in rt["labels"].items():
        b1, b32 = rt["batches"]["1"][key], rt["batches"]["32"][key]
        rows.append([label, _f(b1["median"], 2), _f(b1["p95"], 2), f"{b1['ratio_vs_onnx']:.1f}x",
                     _f(b32["median"], 1), _f(b32["images_per_s"], 0), f"{b32['ratio_vs_onnx']:.1f}x"])
    lines += _table(["runtime", "batch 1 median ms", "batch 1 p95 ms", "vs ONNX", "batch 32 median ms",
                     "batch 32 images/s", "vs ONNX"], rows)

    lines += ["", "## 3. HTTP under load (closed loop, keep-alive, 127.0.0.1)", ""]
    rows = []
    for key, title in (("load_predict", "`/predict?gradcam=false`"), ("load_gradcam", "`/predict` + Grad-CAM"),
                       ("load_peer", "naive Keras peer `/predict`")):
        for row in results[key]:
            cpu = _f(row.get("server_cpu_ms_per_request"))
            if row.get("sidecar_cpu_ms_per_request") is not None:
                cpu += f" + {_f(row['sidecar_cpu_ms_per_request'])}"
            rows.append([title, row["concurrency"], row["requests"], row["errors"], _f(row["throughput_rps"]),
                         _f(row["p50_ms"]), _f(row["p95_ms"]), _f(row["p99_ms"]), cpu, f"{row['client_cpu_pct']:.0f}%"])
    lines += _table(["endpoint", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms",
                     "server CPU ms/req (API + sidecar)", "load generator CPU"], rows)
    mem = results["memory"]
    lines += ["", "Server CPU: user + system time of the server process(es) during the run, per answered request."]
    lines += ["", f"Peak RSS (VmHWM): API {_f(mem.get('api_peak_rss_mb'), 0)} MB, "
              f"sidecar {_f(mem.get('sidecar_peak_rss_mb'), 0)} MB, peer {_f(mem.get('peer_peak_rss_mb'), 0)} MB."]
    samples = [s for key in ("load_predict", "load_gradcam", "load_peer") for row in results[key]
               for s in row["error_samples"]]
    if samples:
        lines += ["", "Error samples: " + "; ".join(f"`{s}`" for s in samples[:5])]

    ceiling = results["ceiling"]
    lines += ["", "## 4. The ceiling and the peer", "",
              "In-process throughput of decode + preprocessing + ONNX inference (no HTTP), uploads from memory:", ""]
    lines += _table(["worker threads", "onnxruntime threads", "spin-wait", "OpenCV threads", "images", "images/s",
                     "CPU ms/image"],
                    [[c["threads"], c["ort_threads"] or "auto (1/core)", "yes" if c.get("spinning", True) else "no",
                      c.get("opencv_threads") or "default (1/core)", c["images"], _f(c["images_per_s"]),
                      _f(c.get("cpu_ms_per_image"))] for c in ceiling["layouts"]])
    top = r["top_concurrency"]
    paired = results.get("paired")
    if paired:
        lines += ["", f"Service at concurrency {paired['concurrency']} and the best layout's ceiling, measured back to "
                  "back (ceiling, load, ceiling; this VM's speed drifts by tens of percent within minutes, so the "
                  "ratio of numbers taken minutes apart would mostly measure the drift):", ""]
        lines += _table(["round", "ceiling before, images/s", "service req/s", "ceiling after, images/s", "errors",
                         "service / mean ceiling"],
                        [[i + 1, _f(p["ceiling_before"]), _f(p["service_rps"]), _f(p["ceiling_after"]), p["errors"],
                          f"{100 * p['ratio']:.0f}%"] for i, p in enumerate(paired["rounds"])])
    lines += [
        "",
        f"- Ceiling: **{_f(ceiling['ceiling_images_per_s'])} images/s** (best layout, section 4 run)",
        f"- Service / ceiling (concurrency {top}): **{100 * r['service_vs_ceiling']:.0f}%**"
        + (f" (median of the paired rounds; the section 3 run against the section 4 ceiling: "
           f"{100 * r['service_vs_ceiling_series']:.0f}%)" if paired else ""),
        f"- Service / naive peer (both at concurrency {top}): **{_f(r['service_vs_peer_same_concurrency'])}x**;"
        f" best of each: {_f(r['best_service_vs_best_peer'])}x",
        "",
    ]
    return "\n".join(lines)


def _as_run(results: dict) -> str:
    text = f"; API environment {results['api_env']}" if results.get("api_env") else ""
    text += f"; sidecar environment {results['sidecar_env']}" if results.get("sidecar_env") else ""
    return text + (f"; code from `{results['app_root']}`" if results.get("app_root") else "")


def model_input_text(info: dict) -> str:
    size = info.get("input_size")
    return f"{size}x{size} input" if size else "input size unknown"
