"""Trained models from their own files (pipeline.model) against the frameworks' own output."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import ConfigError
from pipeline.model import load_model

FACTOR = 1e-5  # SPEC section 1: float32 results within 1e-5 * sum|K| * max|x| of exact


def chain_bound(model, frame) -> float:
    """SPEC's float32 bound carried through the model's steps: each bank adds
    FACTOR * (sum|K| * max|x| + max|b|) for the frame that reaches it and multiplies the
    error already there by its largest sum|K| (the steps after are Lipschitz: a per-channel
    scale by its largest |scale|, an activation by at most 1.5, hard_swish's). Doubled:
    the framework's own float32 result is off the exact one by as much again."""
    x = np.asarray(frame, np.float64)
    x = x if x.ndim == 3 else x[:, :, None]
    error = 0.0
    for piece, fn in model.steps:
        if piece.kind == "bank":
            gain = float(np.abs(piece.weights).sum(axis=(1, 2, 3)).max())
            bias = 0.0 if piece.bias is None else float(np.abs(piece.bias).max())
            error = gain * error + FACTOR * (gain * float(np.abs(x).max()) + bias)
        elif piece.kind == "scale":
            error = float(np.abs(piece.scale).max()) * error + FACTOR * float(
                np.abs(piece.shift).max())
        else:
            error *= 1.5
        x = np.asarray(fn(np.asarray(x, np.float32)), np.float64)
    return 2 * error


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
    np.testing.assert_allclose(got, want, rtol=0, atol=chain_bound(model, frame))
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
    model = load_model(path)
    np.testing.assert_allclose(model(frame), want, rtol=0, atol=chain_bound(model, frame))


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


def _keras_out(model, frame):
    return np.asarray(model(frame[None].astype(np.float32)).detach().cpu())[0]


def _random_bn(layer, rng):
    c = layer.get_weights()[0].shape[0]
    layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c) * 0.1,
                       rng.uniform(0.5, 2, c)])


def test_keras_layers_that_do_not_fold_run_as_their_own_steps(tmp_path):
    """A Rescaling offset before a padded conv, a BatchNormalization after an activation,
    a LeakyReLU after a conv that has one: per-channel steps. Even kernels, dilation with
    groups, a SeparableConv2D (depthwise then 1x1, tanh) and a strided valid conv: banks
    with the file's geometry. All against Keras' own output, on uint8 frames."""
    import keras

    rng = np.random.default_rng(5)
    inp = keras.Input((21, 27, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="centre")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn_after_relu")(x)
    x = keras.layers.Conv2D(4, (4, 2), padding="same", name="even")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2, groups=2, name="dil")(x)
    x = keras.layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2,
                                     activation="tanh", name="sep")(x)
    x = keras.layers.LeakyReLU(0.1, name="leaky")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(3, 3, strides=2, name="down")(x)
    reference = keras.Model(inp, x)
    _random_bn(reference.get_layer("bn_after_relu"), rng)
    reference.save(tmp_path / "m.keras")
    frame = rng.integers(0, 256, (21, 27, 3), dtype=np.uint8)
    want = _keras_out(reference, frame)
    model = load_model(tmp_path / "m.keras")
    kinds = [(piece.kind, [layer.name for layer in piece.layers]) for piece in model.pieces]
    assert kinds == [("scale", ["centre"]), ("bank", ["c1"]), ("scale", ["bn_after_relu"]),
                     ("bank", ["even"]), ("bank", ["dil"]), ("bank", ["sep"]),
                     ("bank", ["sep"]), ("activation", ["leaky"]), ("bank", ["down"])]
    got = model(frame)
    assert got.shape == want.shape == (10, 13, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=chain_bound(model, frame))
    assert model.num_params == reference.count_params()


def test_a_rescaling_offset_folds_into_a_conv_that_pads_nothing(tmp_path):
    """Before a valid conv (no zeros read at the borders) the offset folds into the bias:
    one bank, Keras' numbers."""
    import keras

    inp = keras.Input((16, 20, 3))
    x = keras.layers.Rescaling([1 / 255.0, 2 / 255.0, 3 / 255.0], offset=-0.5, name="r")(inp)
    x = keras.layers.Conv2D(4, 3, activation="sigmoid", name="c")(x)
    reference = keras.Model(inp, x)
    reference.save(tmp_path / "v.keras")
    frame = np.random.default_rng(6).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    model = load_model(tmp_path / "v.keras")
    assert [piece.kind for piece in model.pieces] == ["bank"]
    assert model.pieces[0].notes["r"] == "folded into c's kernel and bias"
    np.testing.assert_allclose(model(frame), _keras_out(reference, frame), rtol=0,
                               atol=chain_bound(model, frame))


def _onnx_graph(path):
    """An ONNX chain written node by node (onnx.helper), with what torch's exporter never
    writes: BatchNormalization as a node (before any conv, right after one, and after an
    activation), auto_pad SAME_UPPER and SAME_LOWER on even kernels with stride 2, Clip with
    bounds as inputs, HardSigmoid with its own alpha and beta."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    consts = {}

    def const(name, value):
        consts[name] = numpy_helper.from_array(np.asarray(value, np.float32), name)
        return name

    def bn(tag, c):
        return [const(f"{tag}_{n}", v) for n, v in (
            ("s", rng.uniform(0.5, 2, c)), ("b", rng.normal(size=c)),
            ("m", rng.normal(size=c) * 10), ("v", rng.uniform(0.5, 2, c) * 100))]

    nodes = [
        helper.make_node("BatchNormalization", ["x", *bn("bn0", 3)], ["t0"], name="bn0",
                         epsilon=1e-5),
        helper.make_node("Conv", ["t0", const("w1", rng.normal(size=(6, 3, 4, 4)) * 0.2)],
                         ["t1"], name="conv_upper", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("BatchNormalization", ["t1", *bn("bn1", 6)], ["t2"], name="bn1"),
        helper.make_node("Relu", ["t2"], ["t3"], name="relu"),
        helper.make_node("Conv", ["t3", const("w2", rng.normal(size=(6, 1, 2, 2))),
                                  const("b2", rng.normal(size=6))], ["t4"],
                         name="dw_lower", auto_pad="SAME_LOWER", group=6),
        helper.make_node("Clip", ["t4", const("lo", -1.5), const("hi", 2.0)], ["t5"],
                         name="clip"),
        helper.make_node("BatchNormalization", ["t5", *bn("bn2", 6)], ["t6"], name="bn2"),
        helper.make_node("Conv", ["t6", const("w3", rng.normal(size=(2, 6, 3, 3)) * 0.3)],
                         ["t7"], name="conv_pads", pads=[1, 0, 2, 1], dilations=[2, 1]),
        helper.make_node("HardSigmoid", ["t7"], ["y"], name="hsig", alpha=0.3, beta=0.4),
    ]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       [1, 3, 23, 30])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "h", "w"])],
        initializer=list(consts.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_batch_norm_auto_pad_and_clip_against_onnxruntime(tmp_path):
    import onnxruntime

    path = tmp_path / "g.onnx"
    _onnx_graph(path)
    frame = np.random.default_rng(8).integers(0, 256, (23, 30, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": frame.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    want = want[0].transpose(1, 2, 0)
    model = load_model(path)
    kinds = [(piece.kind, [layer.name for layer in piece.layers]) for piece in model.pieces]
    assert kinds == [("scale", ["bn0"]), ("bank", ["conv_upper", "bn1", "relu"]),
                     ("bank", ["dw_lower", "clip"]), ("scale", ["bn2"]),
                     ("bank", ["conv_pads", "hsig"])]
    got = model(frame)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=chain_bound(model, frame))


def _two_convs(path, channels=3):
    import keras

    model = keras.Sequential([keras.Input((12, 14, channels)),
                              keras.layers.Conv2D(4, 3, name="conv1"),
                              keras.layers.Conv2D(2, 1, name="pw")])
    model.save(path)
    return model


@pytest.mark.parametrize(("layers", "message"), [
    (["conv_1"], r"m\.keras: no layer 'conv_1' \(did you mean 'conv1'\?\); it has \w+, conv1, pw"),
    (["pw", "conv1"], r"m\.keras: layers \['pw', 'conv1'\]: list them in the model's order "
                      r"\(\['conv1', 'pw'\]\)"),
    (["pw", "pw"], r"m\.keras: layers names a layer twice"),
])
def test_layers_that_are_not_the_models_are_config_errors(tmp_path, layers, message):
    _two_convs(tmp_path / "m.keras")
    with pytest.raises(ConfigError, match=message):
        load_model(tmp_path / "m.keras", layers=layers)


def test_a_branch_is_an_error_unless_layers_pick_a_chain(tmp_path):
    import keras

    inp = keras.Input((12, 12, 3))
    a = keras.layers.Conv2D(2, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(2, 1, name="b")(inp)
    keras.Model(inp, keras.layers.Add(name="add")([a, b])).save(tmp_path / "br.keras")
    with pytest.raises(ConfigError, match=r"br\.keras: layer 'b' \(Conv2D\) reads .*, not just "
                                          r"the layer before it \('a'\): the model is not a "
                                          r"chain; run a chain of its layers with layers"):
        load_model(tmp_path / "br.keras")
    assert load_model(tmp_path / "br.keras", layers=["a"])(np.zeros((12, 12, 3))).shape == \
        (12, 12, 2)


def test_a_weights_only_h5_and_an_unsupported_onnx_node_are_config_errors(tmp_path):
    import torch

    _two_convs(tmp_path / "m.keras").save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ConfigError, match=r"w\.weights\.h5: holds weights only"):
        load_model(tmp_path / "w.weights.h5")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.MaxPool2d(2)).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(tmp_path / "p.onnx"),
                      dynamo=False)
    with pytest.raises(ConfigError, match=r"p\.onnx: layer '/1/MaxPool' \(MaxPool\) is not "
                                          r"supported; supported: Conv, BatchNormalization"):
        load_model(tmp_path / "p.onnx")


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_a_model_for_other_channels_stops_before_the_first_frame(tmp_path):
    """Exit 2 with one line naming the stage, the file and both channel counts; nothing
    written."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    _two_convs(tmp_path / "gray.keras", channels=1)
    config = _yaml(tmp_path, "stages:\n  - {name: net, type: model, file: gray.keras}\n")
    out = tmp_path / "out.mkv"
    result = CliRunner().invoke(app, ["run", str(config), "--source", "synthetic:32x24:3",
                                      "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "gray.keras takes 1-channel input" in result.output
    assert "3-channel frames reach it" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_the_model_stage_runs_plans_and_errs_with_line_and_column(tmp_path):
    """Through YAML: the chain run_config makes equals load_model's (and Keras'), `plan`
    lists each layer with its parameters and a total equal to count_params(), and a bad
    layer name points at its line in the YAML."""
    from typer.testing import CliRunner

    from pipeline import load_config, run_config
    from pipeline.cli import app
    from pipeline.io.sinks import MemorySink

    reference = _keras_model(tmp_path / "m.keras")
    config = _yaml(tmp_path, "stages:\n  - type: model\n    file: m.keras\n")
    sink = MemorySink("float")
    run_config(config, source="synthetic:30x24:2", sinks=[sink])
    from pipeline.io.sources import SyntheticSource

    frame = SyntheticSource(30, 24).frame(1)
    model = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(sink.frames[1], model(frame), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sink.frames[1], _keras_out(reference, frame), rtol=0,
                               atol=chain_bound(model, frame))
    result = CliRunner().invoke(app, ["plan", str(config), "--size", "30x24"])
    assert result.exit_code == 0, result.output
    for line in ("layer conv1 (Conv2D), 216 parameters",
                 "layer bn1 (BatchNormalization), 32 parameters: folded into the conv's "
                 "kernel and bias", "layer dw2 (DepthwiseConv2D), 160 parameters",
                 f"{reference.count_params()} parameters (as the framework counts them)"):
        assert line in result.output
    bad = _yaml(tmp_path, "stages:\n  - type: model\n    file: m.keras\n    layers: [conv]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4:\d+: .*no layer 'conv'"):
        load_config(bad)


def test_safetensors_weights_and_bias_match_torch_conv2d(tmp_path):
    """weights: {file, key} and bias: {file, key} from a torch state dict saved with
    safetensors (oihw by default), on uint8 frames, against torch's own conv2d."""
    import torch
    from safetensors.torch import save_file

    from pipeline import run_config
    from pipeline.io.sinks import MemorySink
    from pipeline.io.sources import SyntheticSource

    torch.manual_seed(9)
    conv = torch.nn.Conv2d(3, 5, (3, 5), padding=(1, 2), padding_mode="reflect")
    save_file({k: v.detach().contiguous() for k, v in conv.state_dict().items()},
              str(tmp_path / "w.safetensors"))
    config = _yaml(tmp_path, """\
stages:
  - type: bank
    op: correlate           # torch's conv2d is a correlation
    weights: {file: w.safetensors, key: weight}
    bias: {file: w.safetensors, key: bias}
    padding: same
    border: reflect101      # torch padding_mode 'reflect'
""")
    sink = MemorySink("float")
    run_config(config, source="synthetic:40x30:2", sinks=[sink])
    frame = SyntheticSource(40, 30).frame(1)
    with torch.no_grad():
        want = conv(torch.from_numpy(frame.transpose(2, 0, 1)[None].astype(np.float32)))
    want = want[0].numpy().transpose(1, 2, 0)
    gain = float(conv.weight.abs().sum(dim=(1, 2, 3)).max())
    np.testing.assert_allclose(sink.frames[1], want, rtol=0,
                               atol=2 * FACTOR * (gain * 255 + float(conv.bias.abs().max())))
