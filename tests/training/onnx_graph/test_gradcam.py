"""The exported graph's `gradcam_activations` output: the Keras layers' activations, added without changing
any other output, to new exports and to an older model folder."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import onnx

from app.imaging.preprocess import Preprocessor, to_batch
from app.model.card import CARD_FILE, load_model_card, restamp, sha256_of
from app.model.session import open_session
from tests.conftest import VAL16, needs_shared
from training.onnx_graph.gradcam import GRADCAM_OUTPUT, add_gradcam_output_cli, has_gradcam_output

pytestmark = needs_shared


def films_of(model_dir, count: int = 4) -> np.ndarray:
    preprocessor = Preprocessor(load_model_card(model_dir).preprocessing)
    return to_batch([preprocessor.from_bytes(p.read_bytes()) for p in sorted(VAL16.glob("*/*.jpeg"))[:count]])


def test_the_output_holds_the_keras_layer_activations(tiny_model_dir):
    card = load_model_card(tiny_model_dir)
    entry = card.raw["output"]["gradcam"]
    assert card.gradcam_name == GRADCAM_OUTPUT and entry["layers"] == list(card.gradcam_layers)
    batch = films_of(tiny_model_dir)
    (onnx_activations,) = open_session(tiny_model_dir / card.onnx_file).run([GRADCAM_OUTPUT], {"image": batch})
    model = keras.models.load_model(tiny_model_dir / card.keras_file, compile=False)
    layers = keras.Model(model.inputs, [model.get_layer(name).output for name in card.gradcam_layers])
    outputs = layers(batch)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]  # Keras unwraps a list of one
    keras_activations = np.concatenate([np.asarray(a) for a in outputs], axis=-1)
    assert onnx_activations.shape == (len(batch), sum(entry["channels"]), *entry["grid"])
    assert onnx_activations.max() > 0  # a live layer, not zeros
    np.testing.assert_allclose(onnx_activations, keras_activations.transpose(0, 3, 1, 2), rtol=1e-4, atol=1e-4)


def test_an_older_model_folder_gets_the_output_once_with_a_new_version(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir, ignore=shutil.ignore_patterns("plots"))
    card = json.loads((model_dir / CARD_FILE).read_text())
    onnx_path = model_dir / card["files"]["onnx"]
    graph = onnx.load(str(onnx_path))  # make it an older export: no output, no card entry
    outputs = [o for o in graph.graph.output if o.name != GRADCAM_OUTPUT]
    nodes = [n for n in graph.graph.node if GRADCAM_OUTPUT not in n.output]
    del graph.graph.output[:], graph.graph.node[:]
    graph.graph.output.extend(outputs)
    graph.graph.node.extend(nodes)
    onnx.save(graph, str(onnx_path))
    del card["output"]["gradcam"]
    restamp(card, onnx_path)
    (model_dir / CARD_FILE).write_text(json.dumps(card))
    older = load_model_card(model_dir)
    assert older.gradcam_name is None
    before = open_session(onnx_path).run(["probability", "features"], {"image": films_of(model_dir)})

    result = add_gradcam_output_cli(model_dir, VAL16)
    assert result["added"]["parent_version"] == older.version != result["version"]
    newer = load_model_card(model_dir)
    assert newer.version == result["version"] and newer.onnx_sha256 == sha256_of(onnx_path)
    assert newer.gradcam_name == GRADCAM_OUTPUT and has_gradcam_output(onnx.load(str(onnx_path)))
    after = open_session(onnx_path).run(["probability", "features"], {"image": films_of(model_dir)})
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert add_gradcam_output_cli(model_dir, VAL16) == {"version": newer.version, "added": None}
