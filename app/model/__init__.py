"""The model in production: its card, the onnxruntime session and the engine that runs it."""
