"""Subnormal weights leave the exported ONNX graph as zeros, with every output unchanged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
from onnx import numpy_helper

from app.model.card import CARD_FILE, load_model_card, sha256_of
from tests.conftest import VAL16, needs_shared
from training.onnx_graph.denormals import flush_denormals, flush_denormals_cli

SUBNORMAL = np.float32(1e-40)


def subnormal_count(model: onnx.ModelProto) -> int:
    arrays = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    return sum(int(((a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)).sum()) for a in arrays)


def plant_subnormals(model: onnx.ModelProto, per_tensor: int = 3) -> int:
    """Overwrite the first weights of every large float initializer with a subnormal value."""
    planted = 0
    for index, init in enumerate(model.graph.initializer):
        weights = numpy_helper.to_array(init).copy()
        if init.data_type != onnx.TensorProto.FLOAT or weights.size < 16:
            continue
        weights.reshape(-1)[:per_tensor] = SUBNORMAL
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(weights, init.name))
        planted += per_tensor
    return planted


def test_flush_zeroes_exactly_the_subnormal_weights():
    normal = np.array([1e-3, -2.0, np.finfo(np.float32).tiny], np.float32)  # the smallest normal stays
    tensor = numpy_helper.from_array(np.concatenate([normal, [SUBNORMAL, -SUBNORMAL]]).astype(np.float32), "w")
    graph = onnx.helper.make_graph([], "g", [], [], initializer=[tensor])
    model = onnx.helper.make_model(graph)
    assert flush_denormals(model) == 2
    assert np.array_equal(numpy_helper.to_array(model.graph.initializer[0]), np.concatenate([normal, [0, 0]]))
    assert flush_denormals(model) == 0


def test_the_converter_exports_no_subnormal_weight(tmp_path):
    from training.export import convert_to_onnx, onnx_probabilities
    from training.model import build_model

    keras_model = build_model(64, (4, 4, 8, 8, 8, 16), (0.0,) * 6, 8, 0.0, 0.0)
    layer = keras_model.get_layer("block2_conv")
    kernel, bias = layer.get_weights()
    kernel.reshape(-1)[:5] = SUBNORMAL
    layer.set_weights([kernel, bias])
    onnx_path = tmp_path / "m.onnx"
    assert convert_to_onnx(keras_model, 64, onnx_path) == 5
    assert subnormal_count(onnx.load(str(onnx_path))) == 0
    films = np.random.default_rng(0).random((4, 64, 64, 1), dtype=np.float32)
    expected = keras_model.predict(films, verbose=0).reshape(-1)
    assert np.allclose(onnx_probabilities(onnx_path, films), expected, atol=1e-5)


@needs_shared
def test_a_model_folder_is_flushed_once_with_a_new_version_and_card(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir, ignore=shutil.ignore_patterns("plots"))
    card = load_model_card(model_dir)
    onnx_path = model_dir / card.onnx_file
    model = onnx.load(str(onnx_path))
    planted = plant_subnormals(model)
    onnx.save(model, str(onnx_path))

    result = flush_denormals_cli(model_dir, VAL16)
    record = result["flushed"]
    assert record["weights"] == planted and record["parent_version"] == card.version
    assert record["outputs_bit_identical_on"] == len(list(VAL16.rglob("*.jpeg")))
    assert subnormal_count(onnx.load(str(onnx_path))) == 0
    written = json.loads((model_dir / CARD_FILE).read_text())
    assert written["onnx_sha256"] == sha256_of(onnx_path)
    assert written["version"] == result["version"] != card.version
    assert written["version"].endswith(written["onnx_sha256"][:12])
    assert "subnormal weights" in (model_dir / "MODEL_CARD.md").read_text()

    again = flush_denormals_cli(model_dir, VAL16)  # nothing left: no new version
    assert again == {"version": result["version"], "flushed": None}
