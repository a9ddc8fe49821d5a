"""A second output `features` on the exported ONNX graph, for the out-of-distribution check.

The check (`app.model.ood`) needs the CNN's features of each upload and must not cost a second
network run, so the features come out of the same graph: this appends Flatten/Concat nodes
(and a GlobalAveragePool per pooled block) after tensors that tf2onnx already computes, and
exposes the result as the output `features` (float32 [N, D]). Nothing upstream of
`probability` changes, so it stays bit-identical.

Feature layers, named as in the Keras model (an ensemble's member k has the prefix `mk_`):
  "block<b>"  global average of block b's max-pool output (ONNX MaxPool is NCHW: GlobalAveragePool)
  "gap"       the penultimate global average pool
  "dense"     the dense ReLU layer before the logit
Columns are ordered layer by layer, members in order within a layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import TensorProto, helper

FEATURES_OUTPUT = "features"
# Chosen on the design negatives (training/OOD.md): the penultimate layers barely separate them.
DEFAULT_FEATURE_LAYERS = ("block3", "block4", "block5")


def _pattern(layer: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    member = r"(?:^|/)(?:m(\d+)_)?"
    if layer == "gap":
        return re.compile(member + r"gap(?:_\d+)?/"), ("GlobalAveragePool",)
    if layer == "dense":
        return re.compile(member + r"dense(?:_\d+)?/Relu$"), ("Relu",)
    match = re.fullmatch(r"block(\d+)", layer)
    if match:
        return re.compile(member + rf"block{match.group(1)}_pool(?:_\d+)?/"), ("MaxPool",)
    raise ValueError(f"unknown feature layer {layer!r}: block<b>, gap or dense")


def feature_sources(model: onnx.ModelProto, layer: str) -> list[str]:
    """The tensor names holding each member's `layer` output, in member order."""
    pattern, ops = _pattern(layer)
    found: list[tuple[int, str]] = []
    for node in model.graph.node:
        match = pattern.search(node.name)
        if node.op_type in ops and match:
            found.append((int(match.group(1) or 0), node.output[0]))
    if not found:
        raise ValueError(f"no {layer} node in the graph (looked for {pattern.pattern} on {ops})")
    members = [index for index, _ in found]
    if len(set(members)) != len(members):
        raise ValueError(f"several {layer} nodes per member: {found}")
    return [name for _, name in sorted(found)]


def has_features_output(model: onnx.ModelProto) -> bool:
    return any(output.name == FEATURES_OUTPUT for output in model.graph.output)


def with_features_output(model: onnx.ModelProto, layers: Sequence[str] = DEFAULT_FEATURE_LAYERS) -> onnx.ModelProto:
    """A copy of `model` with the output `features` (float32 [N, D]): the members' `layers` side by side."""
    if has_features_output(model):
        raise ValueError(f"the graph already has an output {FEATURES_OUTPUT!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    columns = []
    for layer in layers:
        for k, name in enumerate(feature_sources(model, layer)):
            base = f"{FEATURES_OUTPUT}/{layer}_{k}"
            if layer.startswith("block"):
                pooled = f"{base}/pool"
                out.graph.node.append(helper.make_node("GlobalAveragePool", [name], [pooled], name=pooled))
                name = pooled
            out.graph.node.append(helper.make_node("Flatten", [name], [f"{base}/flat"], name=f"{base}/flat", axis=1))
            columns.append(f"{base}/flat")
    concat = helper.make_node("Concat", columns, [FEATURES_OUTPUT], name=f"{FEATURES_OUTPUT}/concat", axis=1)
    out.graph.node.append(concat)
    batch = model.graph.output[0].type.tensor_type.shape.dim[0]
    out.graph.output.append(
        helper.make_tensor_value_info(FEATURES_OUTPUT, TensorProto.FLOAT, [batch.dim_param or None, None]))
    onnx.checker.check_model(out)
    return out


def add_features_output(path: Path | str, layers: Sequence[str] = DEFAULT_FEATURE_LAYERS) -> bool:
    """Add the `features` output to the ONNX file at `path` in place; False when it already has one."""
    model = onnx.load(str(path))
    if has_features_output(model):
        return False
    onnx.save(with_features_output(model, layers), str(path))
    return True


def without_features_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` without the `features` output and the nodes added for it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep_outputs = [o for o in out.graph.output if o.name != FEATURES_OUTPUT]
    keep_nodes = [n for n in out.graph.node if not n.name.startswith(f"{FEATURES_OUTPUT}/")]
    del out.graph.output[:]
    out.graph.output.extend(keep_outputs)
    del out.graph.node[:]
    out.graph.node.extend(keep_nodes)
    return out
