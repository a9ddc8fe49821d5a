"""Training, evaluation and export of the chest X-ray CNN (TensorFlow/Keras -> ONNX)."""
