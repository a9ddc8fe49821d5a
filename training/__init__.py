"""Training, evaluation and export of the chest X-ray CNN (TensorFlow/Keras -> ONNX)."""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512-class features. On an
# AVX2-only CPU (this project's 2-core AMD EPYC VM) a training step of the shipped recipe took 2.06 s
# without them and 0.52 s with them (`python -m benchmarks.train_step`, 2 threads, idle machine).
# Set here, before anything imports TensorFlow; an explicit TF_ENABLE_ONEDNN_OPTS=0 still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
