#!/usr/bin/env python
"""Train the example Conv2D of configs/conv2d_keras.yaml (writes configs/weights/).

A linear 3x3 Conv2D, 3 -> 4 channels, fitted by least squares (what gradient descent on a
linear layer converges to) so that on synthetic frames it reproduces: gray, d/dx, d/dy
and the Laplacian of gray. Saved exactly as Keras keeps it: ``Conv2D.get_weights()[0]``,
``(kh, kw, C_in, C_out)`` float32 (layout hwio); the bias is printed for the YAML.

    python scripts/make_example_weights.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.io.sources import SyntheticSource


def main() -> None:
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
    out = Path(__file__).resolve().parent.parent / "configs" / "weights" / "conv2d_keras.npy"
    np.save(out, kernel)
    residual = np.abs(design @ coef - y).max()
    print(f"wrote {out} {kernel.shape}; max training residual {residual:.3g}")
    print("bias:", np.round(bias, 4).tolist())


if __name__ == "__main__":
    main()
