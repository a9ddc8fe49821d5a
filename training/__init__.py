"""Training, evaluation and export of the chest X-ray CNN (TensorFlow/Keras -> ONNX)."""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512-class features. On an
# AVX2-only CPU (this project's 2-core AMD EPYC VM) they make a training step of the shipped recipe
# 2.0-4.2x faster (`python -m benchmarks.train_step`, four runs; numbers in benchmarks/README.md).
# Set here, before anything imports TensorFlow; an explicit TF_ENABLE_ONEDNN_OPTS=0 still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
