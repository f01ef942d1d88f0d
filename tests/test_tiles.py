"""The FFT method on tiles (overlap-save) against scipy, for every option it must honour.

Tiles are forced small (and chunks short) so frames of a few dozen pixels are cut into
many tiles, rows end in short chunks, and tiles overhang the frame.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bound
from scipy import signal

from pipeline import FilterBank
from pipeline.engine import tiles
from pipeline.engine.border import NUMPY_MODE
from pipeline.engine.tiles import TiledFFTMethod, tiling_for


def tiled(bank: FilterBank, shape: tuple[int, int, int], size: int) -> TiledFFTMethod:
    """The bank's spec computed on ``size``² tiles."""
    spec = bank._planned(shape)[0]
    return TiledFFTMethod(spec, tiling_for(spec, size))


def scipy_reference(x, w, *, groups=1, pads, border="zero", value=0.0, stride=(1, 1),
                    dilation=(1, 1)):
    """y[..., o] = Σ_c correlate2d(numpy.pad(x), dilated W[o, c], 'valid')[::stride]."""
    t, b, left, r = pads
    mode = NUMPY_MODE[border]
    extra = {"constant_values": value if border == "constant" else 0.0} \
        if mode == "constant" else {}
    xp = np.pad(x.astype(np.float64), ((t, b), (left, r), (0, 0)), mode=mode, **extra)
    c_out, cg, kh, kw = w.shape
    dh, dw = dilation
    dilated = np.zeros((c_out, cg, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    dilated[:, :, ::dh, ::dw] = w
    og = c_out // groups
    out = []
    for o in range(c_out):
        first = (o // og) * cg
        acc = sum(signal.correlate2d(xp[..., first + c], dilated[o, c], mode="valid")
                  for c in range(cg))
        out.append(acc[:: stride[0], :: stride[1]])
    return np.stack(out, axis=-1)


@pytest.fixture(autouse=True)
def short_chunks(monkeypatch):
    """Chunks of a few tiles: rows end in a short chunk."""
    monkeypatch.setattr(tiles, "CHUNK_BYTES", 6 * 3 * 24 * 24 * 4 * 2)


@pytest.mark.parametrize("border", ["zero", "constant", "replicate", "symmetric", "reflect101",
                                    "wrap"])
@pytest.mark.parametrize("size", [16, 24])
def test_shared_kernel_every_border(rng, border, size):
    k = rng.normal(size=(5, 4))  # even width: the 'same' pads are unequal
    x = rng.normal(size=(37, 53, 3)).astype(np.float32)
    bank = FilterBank(k, border=border, border_value=2.5, method="direct")
    method = tiled(bank, x.shape, size)
    assert method.tiling.count > 4
    pads = bank._planned(x.shape)[0].pads
    expected = scipy_reference(x, np.broadcast_to(k, (3, 1, 5, 4)), groups=3, pads=pads,
                               border=border, value=2.5)
    np.testing.assert_allclose(method(x), expected, atol=bound(k, x))


@pytest.mark.parametrize("groups, c_in, c_out", [(1, 3, 5), (2, 4, 6), (3, 3, 6)])
def test_dense_and_grouped_banks(rng, groups, c_in, c_out):
    w = rng.normal(size=(c_out, c_in // groups, 3, 5))
    x = rng.normal(size=(29, 41, c_in)).astype(np.float32)
    bank = FilterBank(w, groups=groups, border="reflect101", method="direct")
    method = tiled(bank, x.shape, 16)
    pads = bank._planned(x.shape)[0].pads
    expected = scipy_reference(x, w, groups=groups, pads=pads, border="reflect101")
    np.testing.assert_allclose(method(x), expected, atol=bound(w, x))


@pytest.mark.parametrize("stride, dilation, padding", [
    ((2, 3), (1, 1), "same"), ((1, 1), (2, 3), "same"), ((2, 2), (2, 1), "valid"),
    ((1, 1), (1, 1), "full"), ((3, 1), (1, 2), [1, 4, 0, 2]),
])
def test_stride_dilation_padding(rng, stride, dilation, padding):
    w = rng.normal(size=(4, 2, 3, 3))
    x = rng.normal(size=(33, 47, 2)).astype(np.float32)
    bank = FilterBank(w, stride=stride, dilation=dilation, padding=padding, border="replicate",
                      method="direct")
    method = tiled(bank, x.shape, 24)
    spec = bank._planned(x.shape)[0]
    expected = scipy_reference(x, w, pads=spec.pads, border="replicate", stride=stride,
                               dilation=dilation)
    assert expected.shape == spec.out_shape
    np.testing.assert_allclose(method(x), expected, atol=bound(w, x))


def test_float64_and_kernel_larger_than_half_a_tile(rng):
    k = rng.normal(size=(9, 9))
    x = rng.normal(size=(40, 40, 1))
    bank = FilterBank(k, border="symmetric", method="direct", dtype="float64")
    method = tiled(bank, x.shape, 24)  # step 16: barely more than the extent
    pads = bank._planned(x.shape)[0].pads
    expected = scipy_reference(x, k[None, None], pads=pads, border="symmetric")
    np.testing.assert_allclose(method(x), expected, atol=bound(k, x, "float64"))


def test_nan_stays_local_and_outputs_are_new_arrays(rng):
    k = rng.normal(size=(3, 3)) + 1.0
    x = rng.normal(size=(30, 30, 2)).astype(np.float32)
    bank = FilterBank(k, border="reflect101", method="direct")
    method = tiled(bank, x.shape, 16)
    first = method(x)
    kept = first.copy()
    x[5, 7, 0] = np.nan
    y = method(x)
    np.testing.assert_array_equal(first, kept)  # the second frame wrote elsewhere
    bad = ~np.isfinite(y)
    assert bad[..., 0].sum() == 9 and not bad[..., 1].any()
    np.testing.assert_allclose(y[~bad], bank(x)[~bad], atol=bound(k, x))


def test_planner_picks_tiles_for_a_large_frame():
    """A 21x21 kernel on 1080p: the fft method is planned on tiles and equals filter2D."""
    import cv2

    rng = np.random.default_rng(3)
    k = rng.normal(size=(21, 21)).astype(np.float32)
    x = rng.normal(size=(1080, 1920, 3)).astype(np.float32)
    bank = FilterBank(k, border="reflect101", method="fft")
    assert "tiles" in bank.plan(x.shape).notes["fft"]
    assert isinstance(bank._engine(x.shape), TiledFFTMethod)
    expected = cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(bank(x), expected, atol=bound(k, x))
