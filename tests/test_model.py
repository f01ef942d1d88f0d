"""Trained models from their own files (pipeline.model) against the frameworks' own output."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import ConfigError
from pipeline.model import load_model


def _keras_model(path):
    import keras

    rng = np.random.default_rng(1)
    inp = keras.Input((24, 30, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                     name="dw2")(x)
    x = keras.layers.Conv2D(4, 1, name="pw")(x)
    model = keras.Model(inp, x)
    bn = model.get_layer("bn1")
    bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8) * 0.1,
                    rng.uniform(0.5, 2, 8)])
    model.save(path)
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_model_matches_keras_on_uint8_frames(tmp_path, suffix):
    reference = _keras_model(tmp_path / f"m{suffix}")
    frame = np.random.default_rng(2).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    want = np.asarray(reference(frame[None].astype(np.float32)).detach().cpu())[0]
    model = load_model(tmp_path / f"m{suffix}")
    got = model(frame)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max() * 10)
    assert model.num_params == reference.count_params()
    assert model.pieces[0].kind == "bank" and len(model.pieces[0].layers) == 4  # all folded


def test_onnx_model_matches_onnxruntime(tmp_path):
    import onnxruntime
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU6(),
                              torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
                              torch.nn.LeakyReLU(0.1), torch.nn.Conv2d(8, 4, 1),
                              torch.nn.Hardswish()).eval()
    path = tmp_path / "t.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 24, 32),), str(path), dynamo=False)
    frame = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = frame.transpose(2, 0, 1)[None].astype(np.float32)
    want = session.run(None, {session.get_inputs()[0].name: x})[0][0].transpose(1, 2, 0)
    got = load_model(path)(frame)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max() * 10)


def test_an_unsupported_layer_names_file_layer_and_type(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.MaxPooling2D(name="pool")])
    model.save(tmp_path / "p.keras")
    with pytest.raises(ConfigError, match=r"p\.keras: layer 'pool' \(MaxPooling2D\) is not "
                                          r"supported; supported: InputLayer, Conv2D"):
        load_model(tmp_path / "p.keras")
    chosen = load_model(tmp_path / "p.keras", layers=[model.layers[0].name])
    assert len(chosen.banks) == 1


@pytest.mark.parametrize(("name", "data", "message"), [
    ("junk.onnx", b"\x00\xff" * 50, r"junk\.onnx: not a readable ONNX model"),
    ("junk.keras", b"x", r"junk\.keras: neither a \.keras zip nor an HDF5 file"),
    ("w.npz", b"x", r"w\.npz: not a model file this reads"),
])
def test_a_corrupt_or_foreign_file_is_one_config_error(tmp_path, name, data, message):
    import pipeline

    (tmp_path / name).write_bytes(data)
    with pytest.raises(pipeline.ConfigError, match=message):
        pipeline.load_model(tmp_path / name)
