"""The test checkpoints themselves: every parameter random, so mapping bugs show.

A parameter left at transformers' initial 0 or 1 (biases, tokens, position
embeddings, LayerNorms) makes a swapped or dropped weight invisible to every parity
test built on these checkpoints.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(params=["small_checkpoint", "small_multilabel_checkpoint"], ids=["single", "multi"])
def tensors(request) -> dict[str, np.ndarray]:
    path = request.getfixturevalue(request.param) / "model.safetensors"
    return safetensors_numpy.load_file(str(path))


def test_every_parameter_is_random(tensors):
    assert len(tensors) == 43  # 2 layers: nothing is left out of the check below
    for name, value in tensors.items():
        assert value.size > 1 and np.std(value) > 1e-3, f"{name} is (nearly) constant"
        assert not np.all(value == 0) and not np.all(value == 1), name


def test_layernorm_weights_are_around_one_and_differ(tensors):
    norms = {k: v for k, v in tensors.items() if "layernorm" in k and k.endswith("weight")}
    assert len(norms) == 6  # before/after in 2 layers, the final one, the classifier's
    for name, value in norms.items():
        assert value.min() >= 0.5 and value.max() <= 1.5 and abs(value.mean() - 1) < 0.2, name


def test_no_two_parameters_are_equal(tensors):
    # e.g. cls and distillation tokens, or norm1 and norm2 of a block: a swap must show.
    for (a, x), (b, y) in itertools.combinations(tensors.items(), 2):
        if x.shape == y.shape:
            assert np.abs(x - y).max() > 1e-2, f"{a} == {b}"
