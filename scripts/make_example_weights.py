#!/usr/bin/env python
"""Make the example weights of configs/ (writes configs/weights/).

conv2d_keras.npy (configs/conv2d_keras.yaml): a linear 3x3 Conv2D, 3 -> 4 channels, fitted
by least squares (what gradient descent on a linear layer converges to) so that on
synthetic frames it reproduces: gray, d/dx, d/dy and the Laplacian of gray. Saved exactly
as Keras keeps it: ``Conv2D.get_weights()[0]``, ``(kh, kw, C_in, C_out)`` float32 (layout
hwio); the bias is printed for the YAML.

edge_model.keras and edge_model.onnx (configs/model_keras.yaml, configs/model_onnx.yaml):
one small model, built with Keras 3 (torch backend) and saved as Keras saves it, and the
same layers as a torch Sequential exported by torch.onnx.export. Rescaling(1/255) ->
Conv2D 3 -> 8, 3x3, no bias (gray edges in four directions, + and -) ->
BatchNormalization (statistics as training on the synthetic source would leave them) ->
ReLU -> DepthwiseConv2D 5x5 (a Gaussian per channel) -> Conv2D 1x1 8 -> 3, sigmoid (the
edge directions as colours). The ONNX file has the Rescaling folded into the first conv
(ONNX has no such layer; the exporter folds the BatchNormalization itself). Needs the test
extra (keras, torch): ``pip install -e '.[test]'``.

    KERAS_BACKEND=torch python scripts/make_example_weights.py [--model-only]
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.io.sources import SyntheticSource


WEIGHTS = Path(__file__).resolve().parent.parent / "configs" / "weights"


def conv2d_example() -> None:
    source = SyntheticSource(160, 120, frames=12)
    frames = [source.frame(i).astype(np.float64) for i in range(0, 120, 10)]
    inputs, targets = [], []
    for f in frames:
        gray = cv2.cvtColor(f.astype(np.float32), cv2.COLOR_BGR2GRAY).astype(np.float64)
        wanted = [gray, cv2.Sobel(gray, -1, 1, 0, ksize=3), cv2.Sobel(gray, -1, 0, 1, ksize=3),
                  cv2.Laplacian(gray, -1, ksize=1)]
        patches = sliding_window_view(f, (3, 3), axis=(0, 1))  # (H-2, W-2, C, 3, 3)
        inputs.append(patches.transpose(0, 1, 3, 4, 2).reshape(-1, 27))  # (kh, kw, C_in)
        targets.append(np.stack([t[1:-1, 1:-1] for t in wanted], -1).reshape(-1, 4))
    x = np.concatenate(inputs)
    y = np.concatenate(targets)
    design = np.hstack([x, np.ones((len(x), 1))])  # the bias is the last coefficient
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    kernel = coef[:27].reshape(3, 3, 3, 4).astype(np.float32)  # hwio, as Keras stores it
    bias = coef[27].astype(np.float32)
    out = WEIGHTS / "conv2d_keras.npy"
    np.save(out, kernel)
    residual = np.abs(design @ coef - y).max()
    print(f"wrote {out} {kernel.shape}; max training residual {residual:.3g}")
    print("bias:", np.round(bias, 4).tolist())


def edge_filters() -> np.ndarray:
    """(3, 3, 3, 8) hwio: gray (BGR weights of cv2) Sobel in 0, 45, 90 and 135 degrees,
    each with its negative, so the ReLU after keeps both sides of an edge."""
    gray = np.array([0.114, 0.587, 0.299])
    sx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64) / 4
    diag = np.array([[-2, -1, 0], [-1, 0, 1], [0, 1, 2]], np.float64) / 4
    kernels = [sx, diag, sx.T, diag[:, ::-1]]
    kernels = [k for base in kernels for k in (base, -base)]
    return np.stack([np.multiply.outer(k, gray) for k in kernels], -1)  # (3, 3, 3, 8)


def model_example() -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import torch

    from pipeline.kernels import gaussian
    from pipeline.io.sources import SyntheticSource

    inp = keras.Input((None, None, 3), name="frame")
    x = keras.layers.Rescaling(1 / 255.0, name="to_unit")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="edges")(x)
    x = keras.layers.BatchNormalization(name="edges_bn")(x)
    x = keras.layers.ReLU(name="edges_relu")(x)
    x = keras.layers.DepthwiseConv2D(5, padding="same", name="smooth")(x)
    x = keras.layers.Conv2D(3, 1, activation="sigmoid", name="colour")(x)
    model = keras.Model(inp, x, name="edge_model")
    edges = edge_filters()
    model.get_layer("edges").set_weights([edges.astype(np.float32)])
    # BatchNormalization as training leaves it: the statistics of the edges on the
    # synthetic source (moving mean and variance), gamma and beta to unit scale
    frames = np.stack([SyntheticSource(160, 120).frame(i) for i in range(0, 120, 10)])
    feats = keras.Model(inp, model.get_layer("edges").output)(frames.astype(np.float32))
    feats = np.asarray(feats.detach().cpu()).reshape(-1, 8)
    mean, var = feats.mean(0), feats.var(0)
    model.get_layer("edges_bn").set_weights([np.full(8, 1.5, np.float32),
                                             np.full(8, -0.5, np.float32),
                                             mean.astype(np.float32), var.astype(np.float32)])
    g = gaussian(1.0, 5).astype(np.float32)
    model.get_layer("smooth").set_weights([np.repeat(g[:, :, None, None], 8, 2),
                                           np.zeros(8, np.float32)])
    mix = np.zeros((1, 1, 8, 3), np.float32)  # B: horizontal, G: diagonals, R: vertical
    for c, colour in enumerate([0, 0, 1, 1, 2, 2, 1, 1]):
        mix[0, 0, c, colour] = 2.0
    model.get_layer("colour").set_weights([mix, np.full(3, -2.0, np.float32)])
    keras_path = WEIGHTS / "edge_model.keras"
    model.save(keras_path)

    # the same layers in torch (oihw), the 1/255 folded into the first conv
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8, eps=1e-3),
        torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 5, padding=2, groups=8),
        torch.nn.Conv2d(8, 3, 1), torch.nn.Sigmoid()).eval()
    bn = model.get_layer("edges_bn")
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(edges.transpose(3, 2, 0, 1) / 255.0))
        for name, value in zip(("weight", "bias", "running_mean", "running_var"),
                               bn.get_weights()):
            getattr(net[1], name).copy_(torch.from_numpy(value))
        net[3].weight.copy_(torch.from_numpy(np.repeat(g[None, None], 8, 0)))
        net[3].bias.zero_()
        net[4].weight.copy_(torch.from_numpy(mix.transpose(3, 2, 0, 1)))
        net[4].bias.fill_(-2.0)
    onnx_path = WEIGHTS / "edge_model.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 120, 160),), str(onnx_path), dynamo=False,
                      input_names=["frame"], output_names=["colour"],
                      dynamic_axes={"frame": {2: "height", 3: "width"}})
    check = frames[3].astype(np.float32)
    want = np.asarray(model(check[None]).detach().cpu())[0]
    with torch.no_grad():
        got = net(torch.from_numpy(check.transpose(2, 0, 1)[None].copy()))[0]
    diff = np.abs(got.numpy().transpose(1, 2, 0) - want).max()
    print(f"wrote {keras_path} and {onnx_path}; {model.count_params()} parameters; "
          f"torch vs keras max difference {diff:.2g}")


def main() -> None:
    import sys

    if "--model-only" not in sys.argv:  # the .npy: bit-for-bit only with the same BLAS
        conv2d_example()
    model_example()


if __name__ == "__main__":
    main()
