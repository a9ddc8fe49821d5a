"""Edits of an exported ONNX graph, each checked against the graph it replaces.

`denormals` flushes subnormal weights (onnxruntime's slow path), `features` adds the OOD check's output,
`gradcam` adds the Grad-CAM layer's activations for the sidecar.
"""
