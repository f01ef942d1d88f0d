"""The optional C kernels of the engine (pipeline/engine/_correlate.c, _spectral.c,
_depthwise.c) and of the video writer (pipeline/io/_yuv.c).

Everything else is declared in pyproject.toml. ``optional=True``: where no C compiler is
at hand the install still succeeds and the engine uses numpy instead (im2col + GEMM for
the direct method, a pass per product for the FFT method's multiply-accumulate).
"""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3"]

setup(ext_modules=[
    Extension(f"pipeline.engine.{name}", [f"pipeline/engine/{name}.c"],
              depends=["pipeline/engine/_shared.h"], extra_compile_args=FLAGS, optional=True)
    for name in ("_correlate", "_spectral", "_depthwise")
] + [
    # the video writer's BGR -> YUV 4:2:0 (without it: swscale, about 4 ms a 720p frame).
    # Python's own -fwrapv (signed overflow defined) kept gcc from vectorising its integer
    # loops: 2.2 ms a 720p frame with it, 0.9 ms without; its arithmetic never overflows.
    Extension("pipeline.io._yuv", ["pipeline/io/_yuv.c"],
              extra_compile_args=FLAGS + ([] if sys.platform == "win32" else ["-fno-wrapv"]),
              optional=True),
])
