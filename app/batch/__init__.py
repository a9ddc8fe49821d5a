"""Batch scoring of an archive of films: `python -m app.batch --input DIR_OR_GLOB --output FILE.csv|FILE.parquet`.

Every film goes through the engine the API uses (`app.model.engine.InferenceEngine`: the card's
decode and preprocessing, the ONNX model, the card's threshold), so a row here is what `/predict`
would have answered for that file. One row per file, a bad file is a row with an error; a rerun
with the same output skips what is already scored.

Modules: `files` (what to score), `scoring` (the one per-file function, shared by both engines),
`output` (CSV / parquet, incremental, resumable), `local` (a process pool on this machine),
`ray_engine` (Ray Data, local or a cluster), `cli` (argparse). Nothing here imports the API
(FastAPI) or TensorFlow; Ray is imported only by `--engine ray` (the optional extra `batch`).
"""
