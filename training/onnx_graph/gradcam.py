"""A third output `gradcam_activations` on the exported ONNX graph: the Grad-CAM layer's activations.

Grad-CAM needs the activations A of one conv layer and the gradient of the logit with respect to
them. The forward pass up to that layer (blocks 1-5 at 224, 112, 56, 28 and 14 px) is most of the
network's work, and the API's onnxruntime call has just made it. With this output the API sends
the activations to the sidecar, which runs only the rest of the network forward and back
(`app.sidecar.gradcam.GradCam.compute_from_activations`): the same map, for about a sixth of the
sidecar's time (benchmarks/README.md, "Grad-CAM from the API's activations").

The output is float32 [N, C, H, W] (ONNX's NCHW: tf2onnx runs the convolutions channel-first): the
members' layers (the card's `gradcam_layers`, in order) side by side on the channel axis.
Nothing upstream of `probability` or `features` changes, so both stay bit-identical.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from app.model.card import CARD_FILE, restamp
from training.onnx_graph.denormals import chain_batch, replace_checked

GRADCAM_OUTPUT = "gradcam_activations"


def activation_source(model: onnx.ModelProto, layer: str) -> str:
    """The tensor holding the ReLU output of the Keras layer `layer` (a conv with a ReLU, or the
    `blockN_relu` activation of a batch-norm block)."""
    pattern = re.compile(rf"(?:^|/){re.escape(layer)}(?:_\d+)?/Relu$")
    found = [node.output[0] for node in model.graph.node if node.op_type == "Relu" and pattern.search(node.name)]
    if len(found) != 1:
        raise ValueError(f"expected one ReLU node of layer {layer!r} in the graph, found {len(found)}")
    return found[0]


def has_gradcam_output(model: onnx.ModelProto) -> bool:
    return any(output.name == GRADCAM_OUTPUT for output in model.graph.output)


def with_gradcam_output(model: onnx.ModelProto, layers: Sequence[str], channels: int, grid: Sequence[int]
                        ) -> onnx.ModelProto:
    """A copy of `model` with the output `gradcam_activations` (float32 [N, channels, *grid])."""
    if has_gradcam_output(model):
        raise ValueError(f"the graph already has an output {GRADCAM_OUTPUT!r}")
    if not layers:
        raise ValueError("Grad-CAM needs at least one layer")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    sources = [activation_source(model, layer) for layer in layers]
    if len(sources) > 1:
        node = helper.make_node("Concat", sources, [GRADCAM_OUTPUT], name=f"{GRADCAM_OUTPUT}/concat", axis=1)
    else:
        node = helper.make_node("Identity", sources, [GRADCAM_OUTPUT], name=f"{GRADCAM_OUTPUT}/identity")
    out.graph.node.append(node)
    batch = model.graph.output[0].type.tensor_type.shape.dim[0]
    out.graph.output.append(helper.make_tensor_value_info(
        GRADCAM_OUTPUT, TensorProto.FLOAT, [batch.dim_param or None, int(channels), *(int(n) for n in grid)]))
    onnx.checker.check_model(out)
    return out


def gradcam_card_entry(layers: Sequence[str], channels: Sequence[int], grid: Sequence[int]) -> dict:
    """The card's `output.gradcam` entry: what the API sends the sidecar."""
    return {"name": GRADCAM_OUTPUT, "layers": list(layers), "channels": [int(c) for c in channels],
            "grid": [int(n) for n in grid], "layout": "NCHW",
            "meaning": "the ReLU activations of each Grad-CAM layer (members in order, side by side on the channel "
                       "axis); the sidecar computes the map from them"}


def keras_gradcam_shapes(model, layers: Sequence[str]) -> tuple[list[int], tuple[int, int]]:
    """(channels per layer, (H, W)) of the Keras model's Grad-CAM layers; all must share one grid."""
    shapes = [[int(n) for n in model.get_layer(name).output.shape[1:]] for name in layers]
    grids = {(height, width) for height, width, _ in shapes}
    if len(grids) != 1:
        raise ValueError(f"the Grad-CAM layers' maps differ in size: {sorted(grids)}")
    return [channels for _, _, channels in shapes], grids.pop()


def add_gradcam_output(path, model, layers: Sequence[str]) -> dict:
    """Add the output to the ONNX file at `path` (converted from the Keras `model`) in place; return the
    card entry."""
    channels, grid = keras_gradcam_shapes(model, layers)
    graph = onnx.load(str(path))
    onnx.save(with_gradcam_output(graph, layers, sum(channels), grid), str(path))
    return gradcam_card_entry(layers, channels, grid)


def ensure_gradcam_output(model_dir: Path, check_batch: np.ndarray) -> dict | None:
    """Add the output to a model folder's ONNX file if it has none; update hash, version and card.

    `check_batch` (N, s, s, 1 float32: films through the serving chain): every existing output must stay
    bit-identical on it, or nothing is written. Returns what changed, None when nothing did.
    """
    import keras

    card_path = Path(model_dir) / CARD_FILE
    card = json.loads(card_path.read_text())
    onnx_path = Path(model_dir) / card["files"]["onnx"]
    graph = onnx.load(str(onnx_path))
    if has_gradcam_output(graph):
        return None
    layers = card.get("gradcam_layers") or [card["gradcam_layer"]]
    channels, grid = keras_gradcam_shapes(keras.models.load_model(Path(model_dir) / card["files"]["keras"],
                                                                  compile=False), layers)
    replace_checked(onnx_path, with_gradcam_output(graph, layers, sum(channels), grid), check_batch,
                    "adding the Grad-CAM output")
    parent = restamp(card, onnx_path)
    card["output"]["gradcam"] = gradcam_card_entry(layers, channels, grid)
    card["gradcam_output_added"] = {"parent_version": parent, "outputs_bit_identical_on": int(len(check_batch))}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return {**card["gradcam_output_added"], "layers": layers}


def add_gradcam_output_cli(model_dir: Path, films_dir: Path) -> dict:
    """`python -m training add-gradcam-output`: `ensure_gradcam_output` checked on the films of `films_dir`
    through the card's chain; MODEL_CARD.md regenerated when the file changed."""
    from training.card import render_markdown

    model_dir = Path(model_dir)
    changed = ensure_gradcam_output(model_dir, chain_batch(model_dir, films_dir))
    card = json.loads((model_dir / CARD_FILE).read_text())
    if changed is not None:
        (model_dir / "MODEL_CARD.md").write_text(render_markdown(card))
    return {"version": card["version"], "added": changed}
