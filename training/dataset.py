"""Loading films into memory and feeding Keras batches.

Every film is decoded and resized once with the shared chain (`Preprocessor.decode`
and `.resize`) and kept as uint8 at model size. Each training batch then applies
augmentation, then the rest of the chain (median filter, CLAHE, [0, 1]), exactly as
serving does after its own resize.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from app.imaging.preprocess import PreprocessConfig, Preprocessor, to_batch
from training.augment import AugmentConfig, augment
from training.data import Sample, read_split_list
from training.losses.consistency import paired_views
from training.model import PROBABILITY_OUTPUT, SUBTYPE_OUTPUT


def load_resized(samples: list[Sample], config: PreprocessConfig, workers: int = 2) -> np.ndarray:
    """Decode + resize every film: uint8 array (N, size, size)."""
    preprocessor = Preprocessor(config)

    def load(sample: Sample) -> np.ndarray:
        return preprocessor.resize(preprocessor.decode(sample.path.read_bytes()))

    with ThreadPoolExecutor(workers) as pool:  # cv2 releases the GIL
        images = list(pool.map(load, samples))
    return np.stack(images) if images else np.zeros((0, config.input_size, config.input_size), np.uint8)


def validation_films(run_dir: Path, data_root: Path, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """A run's validation films (from its splits/val.txt), decoded and resized, with labels."""
    samples = read_split_list(Path(run_dir) / "splits" / "val.txt", data_root)
    return load_resized(samples, config), np.array([s.label for s in samples])


def enhance_all(resized: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Median + CLAHE + [0, 1] on every image, without augmentation: (N, s, s, 1)."""
    preprocessor = Preprocessor(config)
    return to_batch([preprocessor.from_framed(img) for img in resized])


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented training batches; a new random order every epoch."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        preprocess: PreprocessConfig,
        augmentation: AugmentConfig,
        seed: int,
        sample_weights: np.ndarray | None = None,
        mixup_alpha: float = 0.0,
        subtypes: np.ndarray | None = None,
        balanced_sampling: bool = False,
        paired: bool = False,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = images, labels.astype(np.float32)
        self.sample_weights = sample_weights
        self.batch_size = batch_size
        self.preprocessor = Preprocessor(preprocess)
        self.augmentation = augmentation
        self.seed = seed
        self.mixup_alpha = mixup_alpha
        self.subtypes = subtypes
        self.balanced_sampling = balanced_sampling
        # paired: each batch is half as many films, each twice, augmented independently, in the layout the
        # consistency loss reads (training/losses/consistency.py; TrainConfig refuses what would break the pairs).
        # An epoch still shows every film, in twice the steps.
        self.paired = paired
        self.films_per_batch = batch_size // 2 if paired else batch_size
        if subtypes is not None and (sample_weights is None or mixup_alpha > 0):
            raise ValueError("the subtype head needs sample weights (Keras' class_weight takes one output) "
                             "and no mixup (its class indices cannot mix)")
        if mixup_alpha > 0 and sample_weights is None:
            raise ValueError("mixup mixes the sample weights too: pass sample_weights "
                             "(Keras' class_weight needs hard labels)")
        self.set_epoch(0)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.films_per_batch)

    def set_epoch(self, epoch: int) -> None:
        """Continue the batch order and augmentation of `epoch` (a resumed run)."""
        self.epoch = epoch
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.balanced_sampling:
            self.order = balanced_order(self.labels, rng)
        else:
            self.order = rng.permutation(len(self.images))

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def __getitem__(self, index: int):
        idx = self.order[index * self.films_per_batch : (index + 1) * self.films_per_batch]
        if self.paired:
            idx = paired_views(idx)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        pre = self.preprocessor
        batch = to_batch([
            pre.from_framed(augment(self.images[i], self.augmentation, rng, int(self.labels[i])))
            for i in idx
        ])
        labels = self.labels[idx]
        if self.sample_weights is None:
            return batch, labels
        weights = self.sample_weights[idx]
        if self.subtypes is not None:
            both = {PROBABILITY_OUTPUT: weights, SUBTYPE_OUTPUT: weights}  # a film weighs alike in both losses
            return batch, model_targets(labels, self.subtypes[idx]), both
        if self.mixup_alpha > 0:
            batch, labels, weights = mixup(batch, labels, weights, self.mixup_alpha, rng)
        return batch, labels, weights


class PairedValidation(keras.utils.PyDataset):
    """Validation films in the training batches' paired layout, each film paired with itself: no
    divergence, so the consistency loss scores the classifier alone, and AUC and accuracy do not change
    when every film counts twice. Built batch by batch, not as a doubled copy of the whole set."""

    def __init__(self, films: np.ndarray, labels: np.ndarray, films_per_batch: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.films, self.labels, self.films_per_batch = films, labels, films_per_batch

    def __len__(self) -> int:
        return math.ceil(len(self.films) / self.films_per_batch)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        part = slice(index * self.films_per_batch, (index + 1) * self.films_per_batch)
        return paired_views(self.films[part]), paired_views(self.labels[part])


def balanced_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An epoch of as many films as `labels`, half of each class, shuffled.

    The smaller class is cycled through whole shuffled passes (each film drawn as often as any other,
    give or take one), the larger one sampled without repeats, so every epoch still has len(labels) steps.
    """
    n = labels.size
    halves = {0: n // 2, 1: n - n // 2}
    parts = []
    for label, count in halves.items():
        members = np.flatnonzero(labels == label)
        if members.size == 0:
            raise ValueError(f"balanced sampling needs films of both classes; class {label} has none")
        passes = -(-count // members.size)
        parts.append(np.concatenate([rng.permutation(members) for _ in range(passes)])[:count])
    return rng.permutation(np.concatenate(parts))


def model_targets(labels: np.ndarray, subtypes: np.ndarray | None) -> np.ndarray | dict[str, np.ndarray]:
    """What Keras fits against: the labels, or one array per output when the model has the subtype head."""
    if subtypes is None:
        return labels
    return {PROBABILITY_OUTPUT: labels.astype(np.float32), SUBTYPE_OUTPUT: subtypes}


def mixup(
    batch: np.ndarray, labels: np.ndarray, weights: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mix each film with a random partner of the same batch (Zhang et al. 2018, mixup).

    Labels and sample weights mix with the same share, so the class balance is kept.
    """
    share = rng.beta(alpha, alpha, len(labels)).astype(np.float32)
    partner = rng.permutation(len(labels))
    mixed = share[:, None, None, None] * batch + (1 - share[:, None, None, None]) * batch[partner]
    return (
        mixed.astype(np.float32),
        share * labels + (1 - share) * labels[partner],
        (share * weights + (1 - share) * weights[partner]).astype(np.float32),
    )
