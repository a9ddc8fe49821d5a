"""Grad-CAM across the process boundary: the wire protocol, the API's client and its circuit breaker.

The sidecar (`app.sidecar`) computes the maps with TensorFlow; nothing here imports it.
"""
