"""The one place an onnxruntime session is built: the API, batch scoring, evaluation,
export checks, robustness and the benchmarks all open the model through `open_session`."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def open_session(onnx_path: Path | str, threads: int = 0, spinning: bool = False) -> ort.InferenceSession:
    """A CPU session. `threads`: intra-op threads (0 = one per core).

    Spin-waiting is off by default: in the API, requests run preprocessing on the same cores from
    the threadpool (and the sidecar's TensorFlow shares them too), and spinning intra-op threads
    starve that work. The benchmarks turn it on to measure the in-process ceiling.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
