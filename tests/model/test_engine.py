"""The inference engine: one shared session, per-thread preprocessing, the overlay background."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from app.imaging.errors import ImageTooLargeError
from app.imaging.overlay import preview_of
from app.imaging.preprocess import Preprocessor
from app.model.engine import InferenceEngine
from tests.serving import FIXTURE_JPEGS, FULLRES_FILES


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> InferenceEngine:
    return InferenceEngine(model_dir, threads=1)


@pytest.mark.parametrize(("gray_shape", "upload", "expected"), [
    ((354, 444), (1776, 1416), (408, 512)),  # JPEG decoded at 1/4: made up to 512
    ((708, 888), (1776, 1416), (408, 512)),  # decoded at 1/2: shrunk to 512
    ((300, 200), (200, 300), (300, 200)),  # small upload: kept as is
])
def test_preview_keeps_upload_aspect(gray_shape, upload, expected) -> None:
    preview = preview_of(np.zeros(gray_shape, np.uint8), *upload)
    assert preview.shape == expected and preview.dtype == np.uint8


def test_prepare_matches_shared_chain(engine: InferenceEngine) -> None:
    data = FIXTURE_JPEGS[0].read_bytes()
    prepared = engine.prepare(data, 10**8)
    expected = Preprocessor(engine.card.preprocessing).from_bytes(data)
    assert np.array_equal(prepared.model_input[0, :, :, 0], expected)
    assert (prepared.width, prepared.height) == (640, 510)
    assert max(prepared.preview.shape) == 512


def test_a_call_made_alone_runs_on_the_second_session_with_the_same_answer(model_dir: Path) -> None:
    engine = InferenceEngine(model_dir, threads=1, alone_threads=2)
    assert engine.alone_session is not None
    assert engine.alone_session.get_session_options().intra_op_num_threads == 2
    prepared = [engine.prepare(path.read_bytes(), 10**8) for path in FIXTURE_JPEGS[:2]]
    under_load = engine.assess(prepared)
    shared = engine.session
    engine.session = None  # type: ignore[assignment]  # a call that reached it would fail
    try:
        alone = engine.assess(prepared, alone=True)
    finally:
        engine.session = shared
    for a, b in zip(under_load, alone, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        assert a.ood_score == pytest.approx(b.ood_score, abs=1e-5)


@pytest.mark.parametrize(("threads", "alone_threads"), [(1, 1), (1, None), (2, 1), (0, 2)])
def test_no_second_session_unless_it_has_more_threads(model_dir: Path, threads: int, alone_threads: int | None) -> None:
    """threads=0 already means every core."""
    assert InferenceEngine(model_dir, threads=threads, alone_threads=alone_threads).alone_session is None


def test_prepare_pixel_limit_raises_413(engine: InferenceEngine) -> None:
    with pytest.raises(ImageTooLargeError):
        engine.prepare(FIXTURE_JPEGS[0].read_bytes(), 1000)


def test_preprocessor_is_one_per_thread(engine: InferenceEngine) -> None:
    seen: list[Preprocessor] = []
    threads = [threading.Thread(target=lambda: seen.append(engine.preprocessor())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(p) for p in seen}) == 3
    assert engine.preprocessor() is engine.preprocessor()


@pytest.mark.skipif(not FULLRES_FILES, reason="../shared/data/val16_fullres is not beside the repo")
def test_predict_concurrent_threads_agree(engine: InferenceEngine) -> None:
    """The shared session and per-thread CLAHE give the same answers under concurrency."""
    files = FULLRES_FILES[:6]
    serial = [engine.predict(engine.prepare(p.read_bytes(), 10**8)) for p in files]
    results: dict[int, float] = {}

    def work(index: int) -> None:
        results[index] = engine.predict(engine.prepare(files[index].read_bytes(), 10**8))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(files))] == serial


def test_training_feeds_each_film_as_the_api_does(engine: InferenceEngine) -> None:
    """The training feed without augmentation (`load_resized`, then `enhance_all`: the rest of the chain
    through `Preprocessor.from_framed`) gives the model the same floats as the API's `prepare`."""
    from training.data import Sample
    from training.dataset import enhance_all, load_resized

    paths = [*FIXTURE_JPEGS, *FULLRES_FILES[:4]]
    config = engine.card.preprocessing
    trained = enhance_all(load_resized([Sample(path, 0) for path in paths], config), config)
    served = np.concatenate([engine.prepare(path.read_bytes(), 10**8).model_input for path in paths])
    assert trained.shape == served.shape == (len(paths), config.input_size, config.input_size, 1)
    assert np.array_equal(trained, served)
