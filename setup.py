"""The optional C kernel of the direct method (pipeline/engine/_correlate.c).

Everything else is declared in pyproject.toml. ``optional=True``: where no C compiler is
at hand the install still succeeds and the engine uses im2col + GEMM instead.
"""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3"]

setup(ext_modules=[
    Extension(f"pipeline.engine.{name}", [f"pipeline/engine/{name}.c"],
              depends=["pipeline/engine/_isa.h"], extra_compile_args=FLAGS, optional=True)
    for name in ("_correlate",)
])
