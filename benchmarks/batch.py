"""Batch scoring throughput (`python -m app.batch`): films per second of each engine, end to end.

    python -m benchmarks.batch [--model-dir models] [--rounds 2] [--write] [--json out.json]

Configurations, each scoring a whole folder into a fresh CSV through `app.batch.cli.run_batch`
(listing, reading from the page cache, decode, preprocessing, ONNX, writing rows):
  in-process  one InferenceEngine (1 onnxruntime thread, OpenCV 1 thread) in a loop over
              batches of 32, no pool, no output: the per-core rate every engine is made of
  local xN    `--engine local --workers N`: N spawned processes, their start-up included
  ray xN      `--engine ray --actors N` on a local Ray started once (its start-up reported
              apart, as on a cluster that is already up); the actors' start-up included
Films: the 16 full-resolution films of ../shared/data/val16_fullres, linked 13 times (208),
and the 299 films of test_dev at 224 px. The files are read once before timing, so storage is
not measured (see the scaling notes this writes). Rounds interleave the configurations (this
VM's speed drifts within minutes); the table gives the best round and every round.

`--write` replaces the "Batch scoring" section of benchmarks/RESULTS.md (the rest of the file is
left as `make bench` wrote it, and `make bench` keeps this section).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import DEFAULT_MODEL_DIR, REPO, RESULTS_MD, SHARED_DATA, VAL16, cpu_count, setup_process_env

SECTION = "## Batch scoring"
TEST_DEV = SHARED_DATA / "chest_xray_224" / "test_dev"
FULLRES_COPIES = 13  # 16 films x 13 = 208
ARCHIVE = 100_000  # films, for the scaling estimate


def _fullres_folder(root: Path) -> Path:
    """val16's films linked FULLRES_COPIES times under distinct names (one row each)."""
    folder = root / "fullres"
    films = sorted(VAL16.glob("*/*.jpeg"))
    if not films:
        raise FileNotFoundError(f"no films in {VAL16}")
    for copy in range(FULLRES_COPIES):
        target = folder / f"copy{copy:02d}"
        target.mkdir(parents=True)
        for film in films:
            (target / f"{film.parent.name}_{film.name}").symlink_to(film)
    return folder


def _warm(folder: Path) -> tuple[int, float]:
    """Read every film once (page cache); (count, mean size in kB)."""
    from app.batch.files import find_files

    sizes = [len(Path(p).read_bytes()) for p in find_files(folder)]
    return len(sizes), statistics.fmean(sizes) / 1024


def _in_process(folder: Path, model_dir: Path, batch_size: int = 32) -> dict[str, float]:
    """Films/s of `score_batch` in a loop on one core, and where a film's time goes (a second pass)."""
    import cv2
    import numpy as np

    from app.batch.files import find_files
    from app.batch.scoring import read_items, score_batch
    from app.model.engine import InferenceEngine

    cv2.setNumThreads(1)
    engine = InferenceEngine(model_dir, threads=1)
    engine.warm_up()
    paths = find_files(folder)
    started = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        rows = score_batch(engine, read_items(paths[start:start + batch_size]))
        assert all(row.ok for row in rows)
    seconds = time.perf_counter() - started
    prepare = inference = 0.0
    for start in range(0, len(paths), batch_size):
        mark = time.perf_counter()
        prepared = [engine.prepare(data, 10**9) for _, data in read_items(paths[start:start + batch_size])]
        middle = time.perf_counter()
        engine.predict_batch(np.concatenate([p.model_input for p in prepared]))
        prepare, inference = prepare + middle - mark, inference + time.perf_counter() - middle
    cv2.setNumThreads(-1)
    return {"rate": len(paths) / seconds, "prepare_ms": 1000 * prepare / len(paths),
            "inference_ms": 1000 * inference / len(paths)}


def _engine_run(folder: Path, model_dir: Path, scratch: Path, engine: str, n: int) -> tuple[float, float]:
    """(films/s, seconds) of one run_batch into a fresh CSV."""
    from app.batch.cli import run_batch

    output = scratch / f"{engine}{n}.csv"
    output.unlink(missing_ok=True)
    options = {"workers": n} if engine == "local" else {"actors": n}
    started = time.perf_counter()
    summary = run_batch(folder, output, engine=engine, model_dir=model_dir, **options)
    seconds = time.perf_counter() - started
    assert summary.scored == summary.found and summary.errors == 0, summary
    return summary.scored / seconds, seconds


CONFIGS = [("in-process", 1), ("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]
FULL, SMALL = "full resolution", "224 px"


def measure(model_dir: Path, rounds: int, with_ray: bool) -> dict:
    setup_process_env()
    from benchmarks.__main__ import _loadavg, _other_processes

    results: dict = {"loadavg_before": _loadavg(), "busy_before": _other_processes(), "rounds": rounds,
                     "cores": cpu_count(), "films": {}, "rates": {}, "startup_s": {}, "split_ms": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cxr-batch-bench-") as tmp:
        root = Path(tmp)
        folders = {FULL: _fullres_folder(root), SMALL: TEST_DEV}
        one = root / "one"  # a single film: what a run costs before its first row
        one.mkdir()
        (one / "film.jpeg").symlink_to(sorted(VAL16.glob("*/*.jpeg"))[0])
        for name, folder in folders.items():
            count, kb = _warm(folder)
            results["films"][name] = {"count": count, "mean_kb": kb}
        configs = [c for c in CONFIGS if with_ray or c[0] != "ray"]
        if with_ray:
            from app.batch.ray_engine import start_ray

            mark = time.perf_counter()
            start_ray(None)
            results["ray_init_s"] = time.perf_counter() - mark
        try:
            for round_ in range(rounds):
                for engine, n in configs:
                    key = f"{engine}|{n}"
                    if engine != "in-process":
                        results["startup_s"].setdefault(key, []).append(_engine_run(one, model_dir, root, engine, n)[1])
                    for name, folder in folders.items():
                        if engine == "in-process":
                            split = _in_process(folder, model_dir)
                            rate = split.pop("rate")
                            results["split_ms"].setdefault(name, []).append(split)
                        else:
                            rate = _engine_run(folder, model_dir, root, engine, n)[0]
                        results["rates"].setdefault(f"{name}|{key}", []).append(rate)
                        print(f"  round {round_ + 1} {name}, {engine} x{n}: {rate:.1f} films/s", flush=True)
        finally:
            if with_ray:
                import ray

                ray.shutdown()
    results["seconds"] = time.perf_counter() - started
    results["loadavg_after"], results["busy_after"] = _loadavg(), _other_processes()
    return results


def _label(engine: str, n: int) -> str:
    if engine == "in-process":
        return "in-process ceiling: one InferenceEngine in a loop, no pool (1 core)"
    if engine == "local":
        return f"`--engine local --workers {n}` ({n} process{'es' if n > 1 else ''})"
    return f"`--engine ray --actors {n}` (local Ray, {n} actor{'s' if n > 1 else ''})"


def render(results: dict) -> str:
    from benchmarks.report import machine

    m = machine()
    rates, films = results["rates"], results["films"]
    best = {key: max(values) for key, values in rates.items()}
    startup = {key: min(values) for key, values in results["startup_s"].items()}
    lines = [SECTION, "",
             "Written by `python -m benchmarks.batch --write` (not by `make bench`, which keeps this section). "
             "Films per second, end to end through `app.batch.cli.run_batch` (listing, reading from the page "
             "cache, decode, preprocessing, ONNX, CSV rows), the pool's or the actors' start-up included; Ray's own "
             f"start-up is not ({results.get('ray_init_s', 0):.1f} s here, once per run of the CLI on a local Ray, "
             f"none on a cluster that is up). Best of {results['rounds']} interleaved rounds, every round in "
             "brackets. Start-up: the time of a run on 1 film (spawning the pool or the actors, loading the model).",
             ""]
    header = [f"{name} ({films[name]['count']} films, {films[name]['mean_kb']:.0f} kB mean), films/s" for name in films]
    lines += ["| configuration | " + " | ".join(header) + " | start-up, s |", "| --- |" + " ---: |" * (len(films) + 1)]
    for engine, n in CONFIGS:
        key = f"{engine}|{n}"
        cells = []
        for name in films:
            values = rates.get(f"{name}|{key}")
            cells.append(f"**{max(values):.1f}** ({', '.join(f'{v:.0f}' for v in values)})" if values else "-")
        if all(c == "-" for c in cells):
            continue
        cells.append(f"{startup[key]:.1f}" if key in startup else "-")
        lines.append(f"| {_label(engine, n)} | " + " | ".join(cells) + " |")
    lines += [""]
    split = {name: {k: statistics.median(s[k] for s in splits) for k in ("prepare_ms", "inference_ms")}
             for name, splits in results["split_ms"].items()}
    busy = results["busy_before"] + results["busy_after"]
    lines += [
        "- One core, per film, batches of 32 (median of the rounds): " + "; ".join(
            f"{name}: {v['prepare_ms']:.1f} ms decode + preprocessing, {v['inference_ms']:.1f} ms ONNX"
            for name, v in split.items()) + ".",
        f"- Machine: {m['cpu']}, {m['cores']} cores usable, {m['memory_gb']:.1f} GB RAM; Python {m['python']}, "
        f"onnxruntime {m['versions'].get('onnxruntime')}, ray {_version('ray')}; commit {m['commit']}, "
        f"{m['date_utc']}; the benchmark ran {results['seconds']:.0f} s.",
        f"- Load average {results['loadavg_before']} before, {results['loadavg_after']} after"
        + (". **Other processes used the CPU during the run, so the timings are not clean:** "
           + "; ".join(f"`{b}`" for b in busy) if busy else "; no other process used the CPU before or after."),
        f"- Command: `.venv/bin/python -m benchmarks.batch --rounds {results['rounds']} --write`.",
        "",
    ]
    lines += _scaling(best, films, split.get(FULL), bool(busy))
    return "\n".join(lines) + "\n"


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _scaling(best: dict[str, float], films: dict, split: dict | None, busy: bool) -> list[str]:
    """The 100,000-film estimate, from the measured per-core rate."""
    per_core = best.get(f"{FULL}|in-process|1")
    if not per_core:
        return []
    kb = films[FULL]["mean_kb"]
    core_hours = ARCHIVE / per_core / 3600
    speedups = [f"{name} {best[f'{name}|local|2'] / best[f'{name}|local|1']:.2f}x" for name in films
                if best.get(f"{name}|local|2") and best.get(f"{name}|local|1")]
    lines = ["**Scaling, on paper** (an archive of 100,000 films like val16's, from the rates above):", ""]
    lines += [
        f"- Per core {per_core:.0f} films/s (the in-process row). One process per core shares nothing but the "
        "disk, so the estimate below scales it linearly with cores and nodes; two processes here gave "
        + (", ".join(speedups) if speedups else "(not measured)") + " the rate of one (the parent process, "
        "listing and writing rows, shares the 2 cores" + (", and so did other work" if busy else "") + "). "
        f"100,000 films are {core_hours:.2f} core-hours of CPU: at about $0.04 per vCPU-hour (on-demand cloud), "
        f"about ${core_hours * 0.04:.2f} of compute, whatever the number of nodes. Wall clock, `--engine ray` on "
        "N nodes of C cores (one actor a core):",
    ]
    for nodes, cores in ((1, 2), (1, 16), (4, 16), (16, 16)):
        rate = nodes * cores * per_core
        lines.append(f"  - {nodes} node{'s' if nodes > 1 else ''} x {cores} cores: {rate:,.0f} films/s, "
                     f"{ARCHIVE / rate / 60:.1f} min of scoring, reading {rate * kb / 1024:,.0f} MB/s")
    lines += [
        "  plus Ray's and the actors' start-up (the table's start-up column; seconds, once per run) and the "
        "driver's listing of 100,000 files (one `os.walk`; seconds on a local disk, minutes on a slow network "
        "file system). Writing 100,000 rows (about 10 MB) is negligible.",
    ]
    if split:
        share = split["inference_ms"] / (split["inference_ms"] + split["prepare_ms"])
        lines.append(
            f"- On CPUs the model bounds it: {share:.0%} of a full-resolution film's time on a core is the ONNX call "
            f"({split['inference_ms']:.1f} ms of {split['inference_ms'] + split['prepare_ms']:.1f} ms), and "
            "batching does not shrink that on one thread. More cores per node, or more nodes, scale it linearly "
            "as long as storage keeps up.")
    lines += [
        f"- Storage is the next bound: the rates above read from the page cache. At {kb:.0f} kB a film, 16 nodes "
        f"of 16 cores need about {256 * per_core * kb / 1024:,.0f} MB/s and {256 * per_core:,.0f} file opens a "
        "second. Each actor reads its batch's files one after another, so on an object store (20-50 ms a GET) an "
        f"actor would wait 20-50 ms a film against its {1000 / per_core:.0f} ms of compute: the read latency, not "
        "the model, would set the pace there unless reads are made concurrent (more actors than cores, or a "
        "prefetching reader).",
        "- Real DICOM archives are 16-bit and often 5-30 MB a film (uncompressed or JPEG 2000): 25-150 times "
        "these JPEGs to read, and a longer decode, so storage and decode can overtake the model there; such "
        "files need `--max-bytes` above the API's 20 MiB.",
        "- Ray's price on one machine is the gap between the `ray` and `local` rows: Ray's own processes (raylet, "
        "object store, the driver streaming the rows) run on the cores the actors need, and a run starts its actors "
        "afresh. It buys the same command on many machines, where the local engine stops at one; on one machine, "
        "use `--engine local`.",
    ]
    return lines


def extract_section(text: str) -> str | None:
    """The "## Batch scoring" section of a RESULTS.md text, up to the next "## " heading; None if absent."""
    start = text.find(SECTION + "\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + len(SECTION))
    return (text[start:end + 1] if end >= 0 else text[start:]).rstrip("\n") + "\n"


def keep_section(new_text: str, old_text: str) -> str:
    """`make bench`'s new RESULTS.md with the batch section of the old one carried over."""
    section = extract_section(old_text)
    return replace_section(new_text, section) if section else new_text


def replace_section(text: str, section: str) -> str:
    """`text` with its "## Batch scoring" section replaced by `section` (appended when absent)."""
    start = text.find(SECTION + "\n")
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(SECTION))
    rest = text[end + 1:] if end >= 0 else ""
    return text[:start] + section + ("\n" + rest if rest else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray configurations")
    parser.add_argument("--write", action="store_true", help=f"replace the section in {RESULTS_MD.name}")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    with_ray = not args.no_ray and importlib.util.find_spec("ray") is not None
    results = measure(args.model_dir.resolve(), args.rounds, with_ray)
    text = render(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write:
        RESULTS_MD.write_text(replace_section(RESULTS_MD.read_text(), text))
        print(f"wrote the section into {RESULTS_MD.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
