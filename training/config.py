"""All options of a training run, in one validated dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.imaging.preprocess import PreprocessConfig
from training.augment import AugmentConfig

# The chain's border crop for new runs (training/STUDY.md: it lifted test_dev AUC for every
# framing-augmented model, validation unchanged).
BORDER_CROP = 0.95
OPTIMIZERS = ("adam", "adamw", "sgd")
POOL_PADDINGS = ("valid", "same")  # training/model.py
# how the last map reaches the dense head (training/model.py), with the card's words for it
HEAD_POOLINGS = {"avg": "global average pool", "max": "global max pool",
                 "avg_max": "global average and max pools, concatenated"}


def check_pooling(pool_padding: str, antialiased_pools: bool, antialias_from_block: int, blocks: int) -> None:
    """The pooling options' rules, for a config and for `training.model.build_model` alike."""
    if pool_padding not in POOL_PADDINGS:
        raise ValueError(f"pool_padding must be one of {', '.join(POOL_PADDINGS)}, not {pool_padding!r}")
    if antialiased_pools and pool_padding != "same":
        raise ValueError('antialiased_pools pad like pool_padding="same": set it')
    if not 1 <= antialias_from_block <= blocks:
        raise ValueError(f"antialias_from_block must be a block, 1 to {blocks}")


def check_head_pooling(head_pooling: str) -> None:
    if head_pooling not in HEAD_POOLINGS:
        raise ValueError(f"head_pooling must be one of {', '.join(HEAD_POOLINGS)}, not {head_pooling!r}")


def check_block1_kernel(side: int) -> None:
    """The first conv's kernel side: odd, so that "same" padding centres it, and 1 to 11."""
    if side % 2 == 0 or not 1 <= side <= 11:
        raise ValueError(f"block1_kernel must be odd, 1 to 11, not {side}")


@dataclass
class TrainConfig:
    data: Path = Path("../shared/data/chest_xray_224")
    split: str = "train"
    out: Path = Path("runs/latest")
    epochs: int = 22
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_learning_rate: float = 2e-5
    warmup_epochs: int = 1
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    seed: int = 42  # weights, batch order and augmentation
    split_seed: int = 42  # the patient-level validation split: the same for every member of an ensemble
    recipe: str = "custom"
    label_smoothing: float = 0.0
    # > 0: focal loss (Lin et al. 2017), cross-entropy x (1 - p_true) ** focal_gamma: films the model already
    # gets right weigh less, the hard ones more
    focal_gamma: float = 0.0
    # > 0: cross-entropy plus this weight x the AUC-margin square loss over the batch's (pneumonia, normal)
    # pairs, a loss on the ranking itself (training/losses/auc_margin.py)
    auc_margin_weight: float = 0.0
    # > 0: generalized cross-entropy (Zhang & Sabuncu 2018), (1 - p_true ** q) / q with q = gce_q: a film the
    # model firmly disagrees with (perhaps mislabelled) weighs less (training/losses/generalized_ce.py)
    gce_q: float = 0.0
    mixup_alpha: float = 0.0  # > 0: mix pairs of films in each batch, weight ~ Beta(alpha, alpha)
    ema_momentum: float = 0.0  # > 0: validate, checkpoint and ship Adam's moving average of the weights
    # > 0: also learn normal / bacterial / viral (from the file names) through an auxiliary head with
    # this loss weight; the head is dropped before calibration, so the shipped model is unchanged in form.
    subtype_weight: float = 0.0
    # True: each epoch draws half its films from each class (the normal films, a quarter of train, are seen
    # about twice as often, each time augmented anew) instead of weighing the classes in the loss.
    balanced_sampling: bool = False
    # > 0: every batch shows each of its films twice, framed independently, and the loss adds this weight
    # x the divergence between the two answers (training/losses/consistency.py)
    consistency_weight: float = 0.0
    framing_balance: bool = False  # weigh films so framing cannot predict the class (training/weights/framing.py)
    # != 1: a `NORMAL2-` normal film weighs this much against an `IM-` normal film, the normal class's
    # total weight unchanged (training/weights/series.py)
    normal2_weight: float = 1.0
    # > 0: a film weighs (films of its patient in the training list) ** -power, each class's total weight
    # unchanged: 1 weighs every patient alike, 0.5 by the square root of their film count (training/weights/patient.py)
    patient_weight_power: float = 0.0
    filters: tuple[int, ...] = (8, 16, 32, 64, 96, 128, 160)
    dropout: tuple[float, ...] = (0.0, 0.05, 0.1, 0.1, 0.15, 0.2, 0.25)
    dense_units: int = 64
    dense_dropout: float = 0.4
    normalization: str = "none"  # "batch": BatchNormalization after each conv (training/model.py)
    pool_padding: str = "valid"  # "same": no map row or column is dropped by a pool (training/model.py)
    # True: every pool from block `antialias_from_block` on is a stride-1 max then a fixed blur at stride 2
    # (MaxBlurPool, training/model.py); the earlier blocks keep plain max pools
    antialiased_pools: bool = False
    antialias_from_block: int = 1
    # the first block's conv kernel side (odd); the other blocks keep 3x3 (training/model.py)
    block1_kernel: int = 3
    # how the last block's map reaches the dense head: its global average (the seed's), its global max, or
    # both side by side (training/model.py)
    head_pooling: str = "avg"
    # adam: Adam with `weight_decay` as an L2 penalty in the loss (the seed's); adamw: Adam with decoupled
    # weight decay, each step shrinks the weights by learning rate x `weight_decay` (no penalty in the loss);
    # sgd: SGD with Nesterov momentum 0.9 and the L2 penalty.
    optimizer: str = "adam"
    min_sensitivity: float = 0.975
    limit: int | None = None  # use only this many images (smoke tests)
    verbose: int = 1
    preprocessing: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(border_crop=BORDER_CROP))
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if len(self.filters) != len(self.dropout):
            raise ValueError("filters and dropout need one entry per block")
        if not 0.0 < self.min_sensitivity <= 1.0:
            raise ValueError("min_sensitivity must be in (0, 1]")
        if self.learning_rate <= 0 or self.min_learning_rate <= 0:
            raise ValueError("learning rates must be positive")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        if self.focal_gamma < 0:
            raise ValueError("focal_gamma must be >= 0")
        if self.auc_margin_weight < 0:
            raise ValueError("auc_margin_weight must be >= 0")
        if not 0.0 <= self.gce_q <= 1.0:
            raise ValueError("gce_q must be in [0, 1]")
        losses = (self.focal_gamma, self.consistency_weight, self.auc_margin_weight, self.gce_q)
        if sum(v > 0 for v in losses) > 1:
            raise ValueError(
                "focal_gamma, consistency_weight, auc_margin_weight and gce_q each set the loss: use one")
        if self.auc_margin_weight > 0 and self.mixup_alpha > 0:
            raise ValueError("auc_margin_weight pairs films by class: mixup's blended labels have none")
        if self.normalization not in ("none", "batch"):
            raise ValueError("normalization must be none or batch")
        check_pooling(self.pool_padding, self.antialiased_pools, self.antialias_from_block, len(self.filters))
        check_block1_kernel(self.block1_kernel)
        check_head_pooling(self.head_pooling)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.mixup_alpha < 0:
            raise ValueError("mixup_alpha must be >= 0")
        if self.subtype_weight < 0:
            raise ValueError("subtype_weight must be >= 0")
        if self.subtype_weight > 0 and self.mixup_alpha > 0:
            raise ValueError("mixup cannot mix the subtype head's class indices: use one or the other")
        if self.balanced_sampling and self.framing_balance:
            raise ValueError("framing_balance weighs the classes itself: use it or balanced_sampling, not both")
        if self.normal2_weight <= 0:
            raise ValueError("normal2_weight must be > 0")
        if not 0.0 <= self.patient_weight_power <= 1.0:
            raise ValueError("patient_weight_power must be in [0, 1]")
        if self.framing_balance and (self.normal2_weight != 1.0 or self.patient_weight_power > 0):
            raise ValueError(
                "framing_balance sets every film's weight itself: not with normal2_weight or patient_weight_power"
            )
        if self.consistency_weight < 0:
            raise ValueError("consistency_weight must be >= 0")
        if self.consistency_weight > 0 and (self.batch_size % 2 or self.mixup_alpha > 0 or self.subtype_weight > 0):
            raise ValueError("consistency_weight needs an even batch_size, no mixup and no subtype head "
                             "(a pair must stay two views of one film with one label)")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError("ema_momentum must be in [0, 1)")

    @property
    def l2_penalty(self) -> float:
        """The L2 coefficient in the loss: `weight_decay`, except under AdamW, which decays the weights
        itself (`training.train.new_optimizer`)."""
        return 0.0 if self.optimizer == "adamw" else self.weight_decay

    @classmethod
    def for_recipe(cls, recipe: str, **options) -> TrainConfig:
        """A config with a named recipe's overrides (`training.recipes`), then `options`."""
        from training.recipes import recipe_overrides

        return cls(recipe=recipe, **{**recipe_overrides(recipe), **options})

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Read back `to_dict()` (a run's run.json)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["preprocessing"] = PreprocessConfig.from_dict(known.get("preprocessing", {}))
        known["augmentation"] = AugmentConfig.from_dict(known.get("augmentation", {}))
        for key in ("filters", "dropout"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["data"], data["out"] = str(self.data), str(self.out)
        return data
