"""Built-in kernels equal the library filters of the same name; weight files load safely."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import assert_close
from scipy import ndimage

from pipeline import ConfigError, FilterBank
from pipeline.kernels import BUILTINS, describe_builtins, make_kernel
from pipeline.weightfiles import load_weights


@pytest.fixture
def frame(rng) -> np.ndarray:
    return (rng.random((40, 52, 3)) * 255).astype(np.float32)


def apply(kernel: np.ndarray, x: np.ndarray, border: str = "reflect101") -> np.ndarray:
    return FilterBank(kernel, align="opencv", border=border)(x)


@pytest.mark.parametrize(("sigma", "size"), [(1.0, None), (2.5, 11), ([1.0, 3.0], [5, 13])])
def test_gaussian_is_gaussian_blur(frame, sigma, size):
    k = make_kernel("gaussian", sigma=sigma, size=size)
    sr, sc = sigma if isinstance(sigma, list) else (sigma, sigma)
    ksize = (k.shape[1], k.shape[0])
    expected = cv2.GaussianBlur(frame, ksize, sigmaX=sc, sigmaY=sr,
                                borderType=cv2.BORDER_REFLECT_101)
    assert_close(apply(k, frame), expected, k, frame)
    np.testing.assert_allclose(k.sum(), 1.0)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_sobel_is_cv2_sobel(frame, axis, size):
    k = make_kernel("sobel", axis=axis, size=size)
    expected = cv2.Sobel(frame, cv2.CV_32F, axis, 1 - axis, ksize=size)
    assert_close(apply(k, frame), expected, k, frame)


def test_sobel_second_order(frame):
    k = make_kernel("sobel", axis=0, size=5, order=2)
    assert_close(apply(k, frame), cv2.Sobel(frame, cv2.CV_32F, 0, 2, ksize=5), k, frame)


@pytest.mark.parametrize("axis", [0, 1])
def test_scharr_is_cv2_scharr(frame, axis):
    k = make_kernel("scharr", axis=axis)
    assert_close(apply(k, frame), cv2.Scharr(frame, cv2.CV_32F, axis, 1 - axis), k, frame)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_laplacian_is_cv2_laplacian(frame, size):
    k = make_kernel("laplacian", size=size)
    assert_close(apply(k, frame), cv2.Laplacian(frame, cv2.CV_32F, ksize=size), k, frame)


@pytest.mark.parametrize("sigma", [0.8, 1.4, 2.0])
def test_log_is_ndimage_gaussian_laplace(frame, sigma):
    k = make_kernel("log", sigma=sigma)
    x = frame[..., 0].astype(np.float64)
    expected = ndimage.gaussian_laplace(x, sigma, mode="mirror")[..., None]
    assert_close(apply(k, x), expected, k, x)


def test_dog_is_difference_of_blurs(frame):
    k = make_kernel("dog", sigma1=1.0, sigma2=2.0, size=13)
    expected = (cv2.GaussianBlur(frame, (13, 13), 1.0) - cv2.GaussianBlur(frame, (13, 13), 2.0))
    assert_close(apply(k, frame), expected, k, frame)


def test_gabor_is_cv2_gabor_in_degrees():
    k = make_kernel("gabor", size=15, sigma=3.0, angle=45, wavelength=8, gamma=0.5, phase=90)
    expected = cv2.getGaborKernel((15, 15), 3.0, math.pi / 4, 8, 0.5, math.pi / 2,
                                  ktype=cv2.CV_64F)
    np.testing.assert_allclose(k, expected)


def test_small_classics():
    np.testing.assert_array_equal(make_kernel("sharpen"),
                                  [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(make_kernel("emboss"),
                                  [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    np.testing.assert_array_equal(make_kernel("identity", size=3),
                                  [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(make_kernel("laplacian"), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])


@pytest.mark.parametrize(("sigma", "amount"), [(1.5, 1.0), (3.0, 0.6)])
def test_unsharp_is_add_weighted_blur(frame, sigma, amount):
    k = make_kernel("unsharp", sigma=sigma, amount=amount)
    blur = cv2.GaussianBlur(frame, k.shape[::-1], sigma)
    expected = cv2.addWeighted(frame, 1 + amount, blur, -amount, 0)
    assert_close(apply(k, frame), expected, k, frame)


def test_box_is_cv2_blur(frame):
    k = make_kernel("box", size=[3, 7])
    assert_close(apply(k, frame), cv2.blur(frame, (7, 3)), k, frame)
    np.testing.assert_array_equal(make_kernel("box", size=2, normalize=False), np.ones((2, 2)))


@pytest.mark.parametrize("angle", [0, 90, 30])
def test_motion_blur_is_a_normalised_line(angle):
    k = make_kernel("motion_blur", size=9, angle=angle)
    np.testing.assert_allclose(k.sum(), 1.0)
    if angle == 0:
        np.testing.assert_allclose(k[4], np.full(9, 1 / 9))
    if angle == 90:
        np.testing.assert_allclose(k[:, 4], np.full(9, 1 / 9), atol=1e-12)
    # symmetric about the centre: a line through it
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-12)


def test_identity_leaves_frame_unchanged(frame):
    np.testing.assert_array_equal(apply(make_kernel("identity", size=5), frame), frame)


def test_every_builtin_is_listed_and_builds():
    rows = describe_builtins()
    assert [r[0] for r in rows] == list(BUILTINS)
    for name in BUILTINS:
        k = make_kernel(name)
        assert k.ndim == 2 and np.isfinite(k).all()


@pytest.mark.parametrize(("name", "params", "message"), [
    ("blurr", {}, "not a built-in kernel"),
    ("gaussian", {"sigma": -1}, "sigma=-1"),
    ("gaussian", {"size": 4}, "odd"),
    ("sobel", {"axis": 2}, "axis=2"),
    ("sobel", {"ksize": 3}, "unknown parameter 'ksize'; allowed: axis, size, order"),
    ("box", {"size": 0}, "size=0"),
    ("gabor", {"angle": float("nan")}, "angle=nan"),
])
def test_builtin_errors(name, params, message):
    with pytest.raises(ConfigError, match=message):
        make_kernel(name, **params)


def test_load_weights(tmp_path, rng):
    w = rng.normal(size=(3, 3, 2, 4))
    np.save(tmp_path / "w.npy", w)
    np.testing.assert_array_equal(load_weights(tmp_path / "w.npy"), w)
    np.savez(tmp_path / "one.npz", kernel=w)
    np.testing.assert_array_equal(load_weights(tmp_path / "one.npz"), w)
    np.savez(tmp_path / "two.npz", a=w, b=w * 2)
    np.testing.assert_array_equal(load_weights(tmp_path / "two.npz", key="b"), w * 2)
    with pytest.raises(ConfigError, match=r"holds arrays \['a', 'b'\]; say which with key"):
        load_weights(tmp_path / "two.npz")
    with pytest.raises(ConfigError, match="no array 'c'"):
        load_weights(tmp_path / "two.npz", key="c")


def test_load_weights_refuses_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="missing.npy: cannot load weights"):
        load_weights(tmp_path / "missing.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match="obj.npy: cannot load weights"):
        load_weights(tmp_path / "obj.npy")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ConfigError, match="NaN or Inf"):
        load_weights(tmp_path / "nan.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ConfigError, match="text.npy: cannot load weights"):
        load_weights(tmp_path / "text.npy")
