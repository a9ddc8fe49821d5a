"""The Grad-CAM sidecar: a second FastAPI app that holds the Keras model (TensorFlow)."""
