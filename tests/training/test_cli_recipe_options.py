"""A recipe may set its own epochs, batch size, learning rate and chain; an option replaces them only when
given (train and study)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import build_parser, train_config
from training.config import TrainConfig
from training.recipes import RECIPES
from training.study import StudyPlan, _train_command


@pytest.mark.parametrize(
    ("argv", "epochs"),
    [
        (["train", "--recipe", "wide_long"], 40),
        (["train", "--recipe", "wide_long", "--epochs", "3"], 3),
        (["train", "--recipe", "framing_resample_wide"], TrainConfig().epochs),
        (["train", "--recipe", "framing_resample_wide", "--epochs", "5"], 5),
    ],
)
def test_train_epochs_come_from_the_recipe_unless_given(argv: list[str], epochs: int) -> None:
    assert train_config(build_parser().parse_args(argv)).epochs == epochs


def test_train_keeps_the_recipes_other_overrides() -> None:
    config = train_config(build_parser().parse_args(["train", "--recipe", "wide_less_dropout", "--epochs", "2"]))
    assert config.dropout == TrainConfig.for_recipe("wide_less_dropout").dropout != TrainConfig().dropout


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], {"batch_size": 16, "learning_rate": 0.02, "val_fraction": 0.2, "min_sensitivity": 0.99}),
        (["--batch-size", "8", "--learning-rate", "0.005", "--val-fraction", "0.1", "--min-sensitivity", "0.9"],
         {"batch_size": 8, "learning_rate": 0.005, "val_fraction": 0.1, "min_sensitivity": 0.9}),
    ],
)
def test_train_options_replace_the_recipes_values_only_when_given(monkeypatch, options, expected) -> None:
    # The study runs `train --recipe R` without these options: a default on the command line would
    # silently replace the recipe's own value (it did, for the SGD recipe's learning rate, until stop 32).
    recipe = {"batch_size": 16, "learning_rate": 0.02, "val_fraction": 0.2, "min_sensitivity": 0.99}
    monkeypatch.setitem(RECIPES, "every_option", recipe)
    config = train_config(build_parser().parse_args(["train", "--recipe", "every_option", *options]))
    assert {name: getattr(config, name) for name in expected} == expected


def test_without_a_recipes_value_the_options_default_to_the_configs(monkeypatch) -> None:
    monkeypatch.setitem(RECIPES, "no_options", {})
    config = train_config(build_parser().parse_args(["train", "--recipe", "no_options"]))
    for name in ("batch_size", "learning_rate", "val_fraction", "min_sensitivity"):
        assert getattr(config, name) == getattr(TrainConfig(), name)


@pytest.mark.parametrize(("epochs", "passed"), [(None, None), (7, "7")])
def test_study_passes_epochs_only_when_given(epochs: int | None, passed: str | None) -> None:
    plan = StudyPlan(
        data=Path("data"), out=Path("out"), recipes=("wide_long",), seeds=(1,), epochs=epochs, input_size=64
    )
    command = _train_command(plan, "wide_long", 1)
    given = command[command.index("--epochs") + 1] if "--epochs" in command else None
    assert given == passed
    if epochs is None:
        config = train_config(build_parser().parse_args(command[command.index("train"):]))
        assert config.epochs == 40


@pytest.mark.parametrize(
    ("argv", "keep"),
    [
        (["train", "--recipe", "same_pool_normal_crops"], TrainConfig().preprocessing.border_crop),
        (["train", "--recipe", "same_pool_normal_crops_crop90"], 0.90),
        (["train", "--recipe", "same_pool_normal_crops_crop90", "--border-crop", "0.8"], 0.8),
        (["train", "--recipe", "same_pool_normal_crops", "--border-crop", "1.0"], 1.0),
    ],
)
def test_border_crop_comes_from_the_recipe_unless_given(argv: list[str], keep: float) -> None:
    config = train_config(build_parser().parse_args(argv + ["--input-size", "96"]))
    assert config.preprocessing.border_crop == keep
    assert config.preprocessing.input_size == 96


def test_the_body_crop_comes_from_the_recipe_with_the_border_crop_given() -> None:
    argv = ["train", "--recipe", "same_pool_normal_crops_body_crop", "--border-crop", "0.9", "--input-size", "96"]
    chain = train_config(build_parser().parse_args(argv)).preprocessing
    assert (chain.body_crop, chain.border_crop, chain.input_size) == (0.25, 0.9, 96)
    assert train_config(build_parser().parse_args(["train", "--input-size", "96"])).preprocessing.body_crop == 0.0
