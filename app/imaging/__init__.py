"""Image handling shared by training and serving: decoding, preprocessing, overlays.

Nothing here imports TensorFlow, so the API image stays light.
"""
