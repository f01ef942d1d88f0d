"""Parity with PyTorch conv2d: dense, groups, depthwise multiplier, stride, dilation, borders.

Also TensorFlow's strided 'same' rule and Keras weight layouts, checked through torch with
the padding TensorFlow documents. torch is an optional test extra (`pip install .[test]`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import FRAME_DTYPES, METHODS, assert_close, sample_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import FilterBank, FrameError

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_conv(x, w, bias=None, **kwargs):
    """x: (H, W, C) numpy; w: (C_out, C_in/g, kh, kw) -> (H', W', C_out) numpy, float64."""
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float64))
    wt = torch.from_numpy(np.asarray(w, dtype=np.float64))
    bt = None if bias is None else torch.from_numpy(np.asarray(bias, dtype=np.float64))
    return F.conv2d(xt, wt, bt, **kwargs)[0].numpy().transpose(1, 2, 0)


def torch_module(x, w, padding, padding_mode, **kwargs):
    """nn.Conv2d with padding_mode (zeros/reflect/replicate/circular)."""
    c_out, cg, kh, kw = w.shape
    conv = torch.nn.Conv2d(cg * kwargs.get("groups", 1), c_out, (kh, kw), padding=padding,
                           padding_mode=padding_mode, bias=False, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float64))
        return conv(xt)[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("k", [(3, 3), (4, 4), (2, 5), (1, 1)])
@pytest.mark.parametrize("dilation", [1, 2, [1, 3]])
def test_dense_same(method, rng, frame, k, dilation):
    """Dense 3 -> 4 with torch padding='same' (keras alignment), dilation included."""
    x = frame((16, 19, 3))
    w = rng.normal(size=(4, 3, *k))
    bias = rng.normal(size=4)
    d = tuple(dilation) if isinstance(dilation, list) else dilation
    expected = torch_conv(x, w, bias, padding="same", dilation=d)
    bank = FilterBank(w, bias, padding="same", dilation=dilation, method=method)
    assert_close(bank(x), expected, w, x)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_groups(method, rng, frame, groups):
    x = frame((15, 17, 4))
    w = rng.normal(size=(8, 4 // groups, 3, 3))
    expected = torch_conv(x, w, padding=1, groups=groups)
    bank = FilterBank(w, groups=groups, padding=1, method=method)
    assert_close(bank(x), expected, w, x)


@pytest.mark.parametrize("multiplier", [1, 2, 3])
def test_depthwise_multiplier(method, rng, frame, multiplier):
    """Output channel k·M + q reads input channel k (PyTorch groups=C_in order)."""
    x = frame((14, 18, 3))
    w = rng.normal(size=(3 * multiplier, 1, 3, 5))
    expected = torch_conv(x, w, padding="same", groups=3)
    bank = FilterBank(w, mode="depthwise", padding="same", method=method)
    assert_close(bank(x), expected, w, x)


@pytest.mark.parametrize("stride", [2, 3, [2, 1], [1, 3]])
@pytest.mark.parametrize("padding", ["valid", 1, [2, 0, 1, 3]])
@pytest.mark.parametrize("dilation", [1, 2])
def test_stride_dilation(method, rng, frame, stride, padding, dilation):
    x = frame((23, 20, 3))
    w = rng.normal(size=(5, 3, 3, 4))
    s = tuple(stride) if isinstance(stride, list) else stride
    if isinstance(padding, list):
        t, b, left, r = padding
        xt = np.pad(x, ((t, b), (left, r), (0, 0)))
        expected = torch_conv(xt, w, stride=s, dilation=dilation)
    else:
        expected = torch_conv(x, w, stride=s, dilation=dilation,
                              padding=0 if padding == "valid" else padding)
    bank = FilterBank(w, padding=padding, stride=stride, dilation=dilation, method=method)
    assert_close(bank(x), expected, w, x)


@pytest.mark.parametrize(("border", "padding_mode"), [
    ("zero", "zeros"), ("reflect101", "reflect"), ("replicate", "replicate"),
    ("wrap", "circular"), ("zeros", "zeros"), ("circular", "circular")])
@pytest.mark.parametrize("stride", [1, 2])
def test_padding_modes(method, rng, frame, border, padding_mode, stride):
    """nn.Conv2d padding_mode zeros/reflect/replicate/circular == our canonical borders."""
    x = frame((12, 13, 2))
    w = rng.normal(size=(3, 2, 5, 5))
    expected = torch_module(x, w, 2, padding_mode, stride=stride)
    bank = FilterBank(w, padding=2, border=border, stride=stride, method=method)
    assert_close(bank(x), expected, w, x)


def tf_same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's documented 'SAME' padding: out = ceil(n/s), extra pixel after."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("n", [(10, 11), (9, 16), (7, 7)])
@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("s", [2, 3])
def test_tensorflow_strided_same(method, rng, frame, n, k, s):
    """Keras/TF 'same' with stride: ceil(n/s) outputs, padding split with the extra after."""
    x = frame((*n, 2))
    w = rng.normal(size=(3, 2, k, k))
    (t, b), (left, r) = tf_same_pads(n[0], k, s), tf_same_pads(n[1], k, s)
    expected = torch_conv(np.pad(x, ((t, b), (left, r), (0, 0))), w, stride=s)
    bank = FilterBank(w, padding="same", stride=s, method=method)
    y = bank(x)
    assert y.shape[:2] == (math.ceil(n[0] / s), math.ceil(n[1] / s))
    assert bank.plan(x.shape).pads == (t, b, left, r)
    assert_close(y, expected, w, x)


def test_keras_conv2d_layout(method, rng, frame):
    """Keras Conv2D.get_weights()[0] is (kh, kw, C_in, C_out): layout hwio runs it unchanged."""
    x = frame((12, 14, 3))
    hwio = rng.normal(size=(3, 4, 3, 6))
    bias = rng.normal(size=6)
    expected = torch_conv(x, hwio.transpose(3, 2, 0, 1), bias, padding="same")
    bank = FilterBank(hwio, bias, layout="hwio", padding="same", method=method)
    assert_close(bank(x), expected, hwio.transpose(3, 2, 0, 1), x)
    assert bank.num_params == hwio.size + 6


def test_keras_depthwise_layout(method, rng, frame):
    """Keras DepthwiseConv2D weights (kh, kw, C_in, M): output k·M + q reads channel k."""
    x = frame((12, 14, 3))
    hwio = rng.normal(size=(3, 3, 3, 2))
    oihw = hwio.transpose(2, 3, 0, 1).reshape(6, 1, 3, 3)
    expected = torch_conv(x, oihw, padding="same", groups=3)
    bank = FilterBank(hwio, layout="hwio", mode="depthwise", method=method)
    assert_close(bank(x), expected, oihw, x)
    # Channel 1 of the output is input channel 0 under its second kernel.
    from scipy.signal import correlate2d

    single = correlate2d(x[..., 0].astype(np.float64), hwio[:, :, 0, 1], mode="same")
    assert_close(bank(x)[..., 1:2], single[..., None], hwio[:, :, 0, 1], x)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "abs", "square"])
def test_activations(method, rng, frame, activation):
    x = frame((10, 12, 3))
    w = rng.normal(size=(4, 3, 3, 3))
    bias = rng.normal(size=4)
    pre = torch.from_numpy(torch_conv(x, w, bias, padding="same"))
    ref = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
           "abs": torch.abs, "square": torch.square}[activation](pre).numpy()
    bank = FilterBank(w, bias, activation=activation, method=method, dtype="float64")
    np.testing.assert_allclose(bank(x), ref, rtol=1e-10, atol=1e-10)


NUMPY_MODE = {"zero": "constant", "replicate": "edge", "symmetric": "symmetric",
              "reflect101": "reflect", "wrap": "wrap"}


def spec_pads(n, k, s, d, padding, align, op):
    """SPEC section 1 padding (before, after) of one axis, from its own words."""
    e = d * (k - 1) + 1
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return e - 1, e - 1
    total = max(0, (math.ceil(n / s) - 1) * s + e - n)
    small, big = total // 2, total - total // 2
    # keras: the kernel index (k-1)//2 sits on the output pixel (as written, for both ops)
    extra_after = (align == "keras") == (op == "correlate")
    return (small, big) if extra_after else (big, small)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 12), w=st.integers(1, 12),
    groups=st.sampled_from([1, 2]), cg=st.integers(1, 2), og=st.integers(1, 2),
    kh=st.integers(1, 5), kw=st.integers(1, 5),
    sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same", "full"]),
    border=st.sampled_from(list(NUMPY_MODE)), align=st.sampled_from(["keras", "opencv"]),
    op=st.sampled_from(["correlate", "convolve"]),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**16), kind=st.sampled_from(FRAME_DTYPES),
)
def test_random_banks_match_torch(h, w, groups, cg, og, kh, kw, sh, sw, dh, dw, padding,
                                  border, align, op, method, seed, kind):
    """Random shapes, strides, dilations, borders: numpy.pad + torch conv2d is the reference."""
    if padding == "full":
        sh = sw = 1
    r = np.random.default_rng(seed)
    x = sample_frame(r, kind, (h, w, groups * cg))
    weights = r.normal(size=(groups * og, cg, kh, kw))
    pads = spec_pads(h, kh, sh, dh, padding, align, op) + spec_pads(w, kw, sw, dw, padding,
                                                                    align, op)
    bank = FilterBank(weights, padding=padding, border=border, align=align, op=op,
                      groups=groups, stride=[sh, sw], dilation=[dh, dw], method=method)
    if h + pads[0] + pads[1] < dh * (kh - 1) + 1 or w + pads[2] + pads[3] < dw * (kw - 1) + 1:
        with pytest.raises(FrameError):
            bank(x)
        return
    xp = np.pad(x, ((pads[0], pads[1]), (pads[2], pads[3]), (0, 0)), mode=NUMPY_MODE[border])
    turned = weights[..., ::-1, ::-1] if op == "convolve" else weights
    xt = torch.from_numpy(np.ascontiguousarray(xp.transpose(2, 0, 1)[None], dtype=np.float64))
    expected = torch.nn.functional.conv2d(
        xt, torch.from_numpy(turned.copy()), stride=(sh, sw), dilation=(dh, dw), groups=groups
    )[0].numpy().transpose(1, 2, 0)
    assert_close(bank(x), expected, weights, x)
