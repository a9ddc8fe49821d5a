"""Flush subnormal float32 weights of an exported ONNX model to zero.

L2 weight decay drives the weights of unused filters towards zero, and some end below float32's
smallest normal number (1.2e-38): the ensemble shipped as 1.0.0+d4771980e69a holds 1,934 of them
among 1.16 M. TensorFlow runs its threads in the CPU's flush-to-zero mode, so Keras never pays for
them. onnxruntime does not put the calling thread in that mode (`session.set_denormal_as_zero`
covers only the threads of its own pool, and the API runs one thread on the calling one; its API
notes recommend models without denormals instead), and every multiply with a subnormal operand
takes the CPU's slow microcode path. On this project's 2-core Intel Xeon VM, batch-1
inference of that model took 9.6 ms, and 3.1 ms with those weights at zero; `/predict` p50 fell
from 24 to 10 ms (`benchmarks/README.md`, "Subnormal weights"). A weight below 1.2e-38 contributes
nothing a float32 sum of this network can hold, so zero changes no output: `flush_model_dir`
checks that, film by film.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from app.model.card import CARD_FILE, restamp
from app.model.session import open_session

_SMALLEST_NORMAL = np.finfo(np.float32).tiny


def flush_denormals(model: onnx.ModelProto) -> int:
    """Set the model's subnormal float32 initializers to zero, in place; return how many there were."""
    flushed = 0
    for initializer in model.graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(initializer)
        subnormal = (weights != 0) & (np.abs(weights) < _SMALLEST_NORMAL)
        if subnormal.any():
            flushed += int(subnormal.sum())
            initializer.CopyFrom(numpy_helper.from_array(np.where(subnormal, np.float32(0), weights), initializer.name))
    return flushed


def flush_file(path: Path) -> int:
    """`flush_denormals` on an ONNX file, rewritten only when something changed."""
    model = onnx.load(str(path))
    flushed = flush_denormals(model)
    if flushed:
        onnx.save(model, str(path))
    return flushed


def _outputs(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    session = open_session(path)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": batch}), strict=True))


def replace_checked(onnx_path: Path, model: onnx.ModelProto, check_batch: np.ndarray, change: str) -> None:
    """Write `model` over the ONNX file at `onnx_path`, only if every output that file has scores
    bit-identically on `check_batch`; else raise and write nothing. `change` names it in the error."""
    before = _outputs(onnx_path, check_batch)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / onnx_path.name
        onnx.save(model, str(tmp_path))
        after = _outputs(tmp_path, check_batch)
        changed = [name for name in before if not np.array_equal(before[name], after[name])]
        if changed:
            raise RuntimeError(f"{change} changed {changed} on the check films; nothing written")
        tmp_path.replace(onnx_path)


def chain_batch(model_dir: Path, films_dir: Path) -> np.ndarray:
    """The films under `films_dir` (searched recursively) through the card's chain: the batch a rewrite of
    the model's ONNX file is checked on."""
    from app.imaging.preprocess import Preprocessor, to_batch
    from app.model.card import load_model_card
    from training.data import IMAGE_SUFFIXES

    films = sorted(p for p in Path(films_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not films:
        raise FileNotFoundError(f"no films under {films_dir}")
    preprocessor = Preprocessor(load_model_card(model_dir).preprocessing)
    return to_batch([preprocessor.from_bytes(p.read_bytes()) for p in films])


def flush_model_dir(model_dir: Path, check_batch: np.ndarray) -> dict | None:
    """Flush a model folder's ONNX file; update its hash, version and card, and return the card (its
    `onnx_denormals_flushed` says what was done). None when nothing changed.

    `check_batch` (N, s, s, 1 float32: films through the serving chain) must score bit-identically
    before and after, every output, or nothing is written. model.keras is not touched.
    """
    card_path = Path(model_dir) / CARD_FILE
    card = json.loads(card_path.read_text())
    onnx_path = Path(model_dir) / card["files"]["onnx"]
    model = onnx.load(str(onnx_path))
    flushed = flush_denormals(model)
    if not flushed:
        return None
    replace_checked(onnx_path, model, check_batch, "flushing subnormal weights")
    parent = restamp(card, onnx_path)
    card["onnx_denormals_flushed"] = {
        "parent_version": parent, "weights": flushed, "outputs_bit_identical_on": int(len(check_batch)),
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def flush_denormals_cli(model_dir: Path, films_dir: Path) -> dict:
    """`python -m training flush-denormals`: flush, check on the films of `films_dir` through the card's
    chain, and regenerate MODEL_CARD.md when the file changed."""
    from app.model.card import load_model_card
    from training.card import render_markdown

    model_dir = Path(model_dir)
    before = load_model_card(model_dir)
    card = flush_model_dir(model_dir, chain_batch(model_dir, films_dir))
    if card is None:
        return {"version": before.version, "flushed": None}
    (model_dir / "MODEL_CARD.md").write_text(render_markdown(card))
    return {"version": card["version"], "flushed": card["onnx_denormals_flushed"]}
