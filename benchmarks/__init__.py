"""Benchmark suite: `python -m benchmarks` (or `make bench`) writes benchmarks/RESULTS.md.

Modules, one job each:
  common       paths, the 16 uploads, statistics, the environment every process gets
  stages       each stage of the chain in process: median and p95
  runtimes     onnxruntime vs Keras `model.predict` vs a compiled `tf.function`
  ceiling      in-process throughput of decode + preprocessing + inference on all cores
  services     starting/stopping the API, the sidecar and the peer as subprocesses; peak RSS
  load         the HTTP load generator (asyncio, bounded count and duration)
  peer_server  the naive peer: FastAPI + Keras `model.predict` per request
  report       the markdown table and the targets
"""
