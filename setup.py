"""The optional C kernel of the direct method (pipeline/engine/_correlate.c).

Everything else is declared in pyproject.toml. ``optional=True``: where no C compiler is
at hand the install still succeeds and the engine uses im2col + GEMM instead.
"""

import sys

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "pipeline.engine._correlate",
    ["pipeline/engine/_correlate.c"],
    extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
    optional=True,
)])
