"""The inference API: FastAPI + onnxruntime. Never imports TensorFlow."""
