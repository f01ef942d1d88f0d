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
from pipeline.engine import cache as disk
from pipeline.engine import layout, planner, tiles, timing
from pipeline.engine.border import BORDERS
from pipeline.engine.fft import FFTMethod
from pipeline.engine.tiles import TiledFFTMethod, tiling_for


def tiled(bank: FilterBank, shape: tuple[int, int, int], size: int) -> TiledFFTMethod:
    """The bank's spec computed on ``size``² tiles."""
    spec = bank._planned(shape)[0]
    return TiledFFTMethod(spec, tiling_for(spec, size))


def scipy_reference(x, w, *, groups=1, pads, border="zero", value=0.0, stride=(1, 1),
                    dilation=(1, 1)):
    """y[..., o] = Σ_c correlate2d(numpy.pad(x), dilated W[o, c], 'valid')[::stride]."""
    t, b, left, r = pads
    mode = BORDERS[border].numpy
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


def test_planner_picks_tiles_for_a_large_frame(monkeypatch):
    """A 21x21 kernel on 1080p: the model plans the fft method on tiles; equals filter2D."""
    import cv2

    monkeypatch.setattr(layout, "TIMING_MIN_MS", float("inf"))  # the model alone decides
    rng = np.random.default_rng(3)
    k = rng.normal(size=(21, 21)).astype(np.float32)
    x = rng.normal(size=(1080, 1920, 3)).astype(np.float32)
    bank = FilterBank(k, border="reflect101", method="fft")
    assert "tiles" in bank.plan(x.shape).notes["fft"]
    assert isinstance(bank._engine(x.shape), TiledFFTMethod)
    expected = cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(bank(x), expected, atol=bound(k, x))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(layout, "TIMING_MIN_MS", 0.0)  # small frames get timed too
    monkeypatch.setattr(timing, "CLOSE_CALL", float("inf"))  # every pair is a close call
    return tmp_path


def test_close_layouts_are_timed_once_then_read_back(rng, own_cache, monkeypatch):
    """Full-frame and the best tilings: timed on the first bank, remembered on disk, only
    read by the next; the fastest runs and equals scipy."""
    w = rng.normal(size=(3, 2, 9, 9))
    x = rng.normal(size=(200, 260, 2)).astype(np.float32)
    builds = []
    real_build = layout.build
    monkeypatch.setattr(layout, "build", lambda s, t: builds.append(t) or real_build(s, t))

    first = FilterBank(w, method="fft")
    y = first(x)
    saved = disk.load_json(layout.LAYOUT_FILE, disk.engine_stamp())
    (key, entry), = saved.items()
    names = key.split(": ", 1)[1].split(" | ")
    timed = [entry[n] for n in names]
    assert len(timed) == layout.TIMED and all(t > 0 for t in timed)
    assert all("tiles" in n for n in names[:-1]) and names[-1] == "full-frame"
    fastest = names[int(np.argmin(timed))]
    note = first.plan(x.shape).notes["fft"]
    assert "timed" in note
    runs = note.split(" (")[0]  # the fastest one runs
    assert runs == fastest if fastest != "full-frame" else runs.endswith(" transforms")
    assert isinstance(first._engine(x.shape), FFTMethod if fastest == "full-frame"
                      else TiledFFTMethod)
    assert len(builds) == len(names)  # those timed; the fastest is kept, not built again
    expected = scipy_reference(x, w, pads=(4, 4, 4, 4))
    np.testing.assert_allclose(y, expected, atol=bound(w, x))

    builds.clear()
    second = FilterBank(w, method="fft")
    np.testing.assert_allclose(second(x), y, atol=bound(w, x))
    assert len(builds) == 1 and second.plan(x.shape).notes["fft"] == note
    assert disk.load_json(layout.LAYOUT_FILE, disk.engine_stamp()) == saved


@pytest.mark.parametrize("winner", [0, 1, 2])
def test_saved_timing_decides_the_layout(rng, own_cache, winner):
    """Whatever the model says, the layout timed fastest on this machine is the one built."""
    w = rng.normal(size=(4, 3, 7, 7))
    x = rng.normal(size=(150, 210, 3)).astype(np.float32)
    bank = FilterBank(w, method="fft", border="reflect101")
    spec = bank._resolve(x.shape)
    k = planner.constants()
    close = layout._close_calls(layout.candidates(spec, k))
    assert len(close) == 3
    timed = [9.0] * len(close)
    timed[winner] = 1.0
    disk.save_json(layout.LAYOUT_FILE, {layout._key(spec, close): dict(
        zip(layout._names(close), timed))}, disk.engine_stamp())
    engine = bank._engine(x.shape)
    chosen = close[winner][1]
    assert isinstance(engine, FFTMethod if chosen is None else TiledFFTMethod)
    if chosen is not None:
        assert engine.tiling == chosen
    expected = scipy_reference(x, w, pads=(3, 3, 3, 3), border="reflect101")
    np.testing.assert_allclose(bank(x), expected, atol=bound(w, x))


def test_dense_banks_may_run_on_tiles(rng, monkeypatch):
    """The model alone (no timing) plans a 3 -> 8 bank at 720p on tiles when it predicts
    them cheaper; the result equals the full-frame method's."""
    monkeypatch.setattr(layout, "TIMING_MIN_MS", float("inf"))
    w = rng.normal(size=(8, 3, 11, 11))
    x = rng.normal(size=(720, 1280, 3)).astype(np.float32)
    bank = FilterBank(w, method="fft")
    spec = bank._resolve(x.shape)
    ranked = layout.candidates(spec, planner.DEFAULT_CONSTANTS)
    assert isinstance(bank._engine(x.shape), FFTMethod if ranked[0][1] is None
                      else TiledFFTMethod)
    assert ranked[0][1] is not None  # on the shipped constants, tiles are predicted cheaper
    np.testing.assert_allclose(bank(x), FFTMethod(spec)(x), atol=bound(w, x))


def test_layout_timings_are_bounded(rng, own_cache, monkeypatch):
    """Past LAYOUT_LIMIT formats the oldest timings go first."""
    monkeypatch.setattr(layout, "LAYOUT_LIMIT", 2)
    older = {"older": {"full-frame": 1.0}, "old": {"full-frame": 1.0}}
    disk.save_json(layout.LAYOUT_FILE, older, disk.engine_stamp())
    w = rng.normal(size=(2, 2, 5, 5))
    for width in (140, 150):
        FilterBank(w, method="fft")(rng.normal(size=(130, width, 2)).astype(np.float32))
    saved = disk.load_json(layout.LAYOUT_FILE, disk.engine_stamp())
    assert len(saved) == 2 and "older" not in saved and "old" not in saved
    assert all(key.startswith(f"130x{width}x2") for key, width in zip(sorted(saved), (140, 150)))
