"""Chest X-ray pneumonia classifier: shared imaging code, the API service and the Grad-CAM sidecar."""
