"""`import training` turns TensorFlow's oneDNN kernels on unless the caller chose (benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PRINT_FLAG = "import os, training; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_training_package_sets_onednn_unless_given(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    out = subprocess.run([sys.executable, "-c", _PRINT_FLAG], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
