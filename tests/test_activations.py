"""Every activation (pipeline/activations.py) against torch's own, on float32 values from
the tails to zero, with inf and NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.activations import apply, parse_activation

F = torch.nn.functional
REFERENCE = {
    "relu": torch.relu, "abs": torch.abs, "square": torch.square,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu,
    "clip(-1.5, 2)": lambda t: torch.clamp(t, -1.5, 2.0),
    "leaky_relu(0.1)": lambda t: F.leaky_relu(t, 0.1),
    "hard_sigmoid": F.hardsigmoid, "hard_swish": F.hardswish,
    "hard_sigmoid(0.2, 0.5)": lambda t: torch.clamp(0.2 * t + 0.5, 0, 1),  # ONNX's
}


@pytest.mark.parametrize("text", list(REFERENCE))
def test_activation_matches_torch(text):
    values = np.concatenate([np.linspace(-100, 100, 20001), [-1e30, 1e30, -3, 3, 0, -0.0],
                             np.random.default_rng(0).standard_normal(1000) * 5])
    x = values.astype(np.float32)
    want = REFERENCE[text](torch.from_numpy(x.copy())).numpy()
    got = apply(x.copy(), parse_activation(text))
    # torch's float32 result is itself a rounding of the exact one: within 2 ulp of 1
    # absolute where the value is at most 1, relative above
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=1.2e-7)
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    want = REFERENCE[text](torch.from_numpy(special.copy())).numpy()
    np.testing.assert_array_equal(apply(special.copy(), parse_activation(text)), want)
