"""Framing consistency: batches of paired views, and a loss that adds their divergence to the cross-entropy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from app.imaging.preprocess import PreprocessConfig
from tests.conftest import needs_shared
from tests.training.losses.batch_loss import batch_loss
from training.augment import AugmentConfig
from training.config import TrainConfig
from training.dataset import AugmentedBatches, PairedValidation
from training.losses.consistency import PairedConsistencyLoss


def _loss(weight: float, labels, probabilities) -> float:
    return batch_loss(PairedConsistencyLoss(weight), labels, probabilities)


def test_views_that_agree_cost_only_the_cross_entropy():
    labels, probs = [0, 1, 0, 1], [0.2, 0.7, 0.2, 0.7]
    bce = float(keras.losses.BinaryCrossentropy()(np.array(labels, np.float32), np.array(probs)[:, None]))
    assert _loss(10.0, labels, probs) == pytest.approx(bce, rel=1e-5)


def test_the_divergence_is_jensen_shannons_between_the_two_halves():
    labels, probs = [0, 1, 0, 1], [0.2, 0.7, 0.6, 0.7]  # film 1's views disagree: 0.2 against 0.6
    m = 0.4
    kl = lambda p, q: p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))  # noqa: E731
    jsd = 0.5 * (kl(0.2, m) + kl(0.6, m))
    gap = _loss(10.0, labels, probs) - _loss(0.0, labels, probs)
    assert gap == pytest.approx(10.0 * jsd * 2 / 4, rel=1e-4)  # one pair of two disagrees, mean over 4 views


def test_the_pair_is_the_same_place_in_the_other_half_not_a_neighbour():
    # views of film 1 at 0 and 2, of film 2 at 1 and 3: agreeing pairs, though neighbours disagree
    labels, agreeing, crossed = [0, 1, 0, 1], [0.1, 0.9, 0.1, 0.9], [0.1, 0.9, 0.9, 0.1]
    assert _loss(10.0, labels, agreeing) == pytest.approx(_loss(0.0, labels, agreeing))
    assert _loss(10.0, labels, crossed) > _loss(0.0, labels, crossed) + 1.0


def test_the_loss_survives_a_checkpoint_round_trip():
    loss = PairedConsistencyLoss(3.0, label_smoothing=0.1)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, PairedConsistencyLoss) and (again.weight, again.label_smoothing) == (3.0, 0.1)


def test_validation_pairs_each_film_with_itself_batch_by_batch():
    films, labels = np.arange(5.0)[:, None], np.array([0, 1, 0, 1, 1], np.float32)
    validation = PairedValidation(films, labels, 2)
    batches = [validation[i] for i in range(len(validation))]
    assert [b[0].ravel().tolist() for b in batches] == [[0, 1, 0, 1], [2, 3, 2, 3], [4, 4]]
    assert [b[1].tolist() for b in batches] == [[0, 1, 0, 1], [0, 1, 0, 1], [1, 1]]


def _batches(paired: bool) -> AugmentedBatches:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (10, 32, 32), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    return AugmentedBatches(images, labels, 4, PreprocessConfig(input_size=32), AugmentConfig(), seed=7,
                            paired=paired)


def test_paired_batches_hold_each_film_twice_framed_independently():
    paired = _batches(True)
    assert len(paired) == 5 and len(_batches(False)) == 3  # 2 films a batch instead of 4: every film, twice the steps
    seen = []
    for index in range(len(paired)):
        batch, labels = paired[index]
        assert batch.shape == (4, 32, 32, 1)
        np.testing.assert_array_equal(labels[:2], labels[2:])
        assert not np.array_equal(batch[:2], batch[2:])  # two augmentations, not one copied
        seen.extend(paired.order[index * 2 : (index + 1) * 2])
    assert sorted(seen) == list(range(10))


def test_paired_batches_carry_each_films_weight_to_both_views_under_balanced_sampling():
    images = np.random.default_rng(1).integers(0, 255, (12, 32, 32), dtype=np.uint8)
    labels = np.array([0] * 3 + [1] * 9)
    weights = np.arange(1, 13, dtype=np.float32)  # a different weight for every film
    batches = AugmentedBatches(images, labels, 4, PreprocessConfig(input_size=32), AugmentConfig(), seed=5,
                               sample_weights=weights, balanced_sampling=True, paired=True)
    for index in range(len(batches)):
        _, batch_labels, batch_weights = batches[index]
        films = batches.order[index * 2 : (index + 1) * 2]
        np.testing.assert_array_equal(batch_weights, np.concatenate([weights[films], weights[films]]))
        np.testing.assert_array_equal(batch_labels[:2], batch_labels[2:])
    assert np.count_nonzero(labels[batches.order] == 0) == 6  # still half of each class


def test_pairs_refuse_what_would_break_them():
    with pytest.raises(ValueError, match="even batch"):
        TrainConfig(consistency_weight=1.0, batch_size=15)
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(consistency_weight=1.0, mixup_alpha=0.2)
    with pytest.raises(ValueError, match=">= 0"):
        TrainConfig(consistency_weight=-1.0)


@needs_shared
def test_a_consistency_run_resumes_and_validates_the_classifier_alone(tmp_path):
    from tests.training.test_resume import tiny_config
    from training.dataset import enhance_all, validation_films
    from training.train import train

    config = tiny_config(tmp_path / "run", epochs=2, consistency_weight=1000.0)
    train(config, session_epochs=1)
    done = train(config)  # resumes from a checkpoint whose loss is PairedConsistencyLoss
    assert len(done["history"]["val_auc"]) == 2 and 0.0 < done["threshold"] < 1.0

    # Validation pairs each film with itself, so its loss is the classifier's own; pairing unrelated
    # films (the plain order) would add their divergence.
    model = keras.models.load_model(config.out / "last.keras")
    resized, labels = validation_films(config.out, config.data, config.preprocessing)
    films, labels = enhance_all(resized, config.preprocessing), labels.astype(np.float32)
    paired = model.evaluate(PairedValidation(films, labels, config.batch_size // 2), verbose=0,
                            return_dict=True)["loss"]
    plain = model.evaluate(films, labels, batch_size=config.batch_size, verbose=0, return_dict=True)["loss"]
    assert plain > paired * (1 + 1e-3)  # the model's answers differ enough between films to tell
    assert done["history"]["val_loss"][-1] == pytest.approx(paired, rel=1e-5)
