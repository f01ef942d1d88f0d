"""A bounded fuzz run (about a minute): random configs from the YAML grammar and broken
ones, and byte flips / truncations of small clips and PNGs made here. Every case is a
CLI subprocess under a hard timeout that must end with one of SPEC's exit codes, one
error line at most, no traceback, and nothing outside its own folder touched."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from harness import Case, snapshot, verify  # noqa: E402
from media import write_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"
SPEC_CODES = frozenset({0, 2, 3, 4, 5, 6})
EXAMPLES = int(os.environ.get("PIPELINE_FUZZ_EXAMPLES", "15"))  # per test; longer runs by hand
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# ------------------------------------------------------------------ the YAML grammar
small = st.integers(min_value=-2, max_value=9)
number = st.one_of(st.floats(-5, 5, allow_nan=False, width=32), st.integers(-3, 3))
kernel = st.integers(1, 5).flatmap(
    lambda n: st.lists(st.lists(number, min_size=n, max_size=n), min_size=1, max_size=5))
builtin = st.fixed_dictionaries(
    {"builtin": st.sampled_from(["gaussian", "box", "sobel", "laplacian", "identity",
                                 "gabor", "blurr"])},
    optional={"size": st.sampled_from([1, 3, 4, 5, 7, 99]), "sigma": number,
              "axis": st.sampled_from([0, 1, 2])})
weights = st.one_of(kernel, builtin, st.lists(builtin, min_size=1, max_size=4),
                    st.just({"file": "w.npy"}), st.just({"file": "w.npy", "key": "x"}),
                    st.just({"file": "../outside/notes.txt"}), st.just([]), st.just("box"))
bank = st.fixed_dictionaries(
    {"type": st.just("bank"), "op": st.sampled_from(["correlate", "convolve", "conv"]),
     "weights": weights},
    optional={"mode": st.sampled_from(["dense", "depthwise", "no"]),
              "padding": st.one_of(st.sampled_from(["same", "valid", "full"]), small,
                                   st.lists(small, min_size=4, max_size=4)),
              "border": st.sampled_from(["zero", "replicate", "symmetric", "reflect101",
                                         "wrap", "reflect", "constant"]),
              "stride": st.one_of(st.integers(0, 3), st.lists(st.integers(1, 3), min_size=2,
                                                              max_size=2)),
              "dilation": st.integers(0, 3), "align": st.sampled_from(["keras", "opencv"]),
              "activation": st.sampled_from(["relu", "tanh", "clip(0, 1)", "clip(2, 1)",
                                             "none", "swish"]),
              "method": st.sampled_from(["auto", "direct", "separable", "fft"]),
              "dtype": st.sampled_from(["float32", "float64", "int8"]),
              "bias": st.lists(number, min_size=1, max_size=3),
              "groups": st.integers(0, 3), "boarder": st.just("zero")})
other = st.one_of(
    st.fixed_dictionaries({"type": st.just("reduce"),
                           "op": st.sampled_from(["sum", "mean", "max", "l2", "min"])}),
    st.fixed_dictionaries({"type": st.just("convert")},
                          optional={"color": st.sampled_from(["gray", "bgr2rgb", "hsv"]),
                                    "scale": number}),
    st.fixed_dictionaries({"type": st.just("resize")},
                          optional={"scale": st.floats(0, 3), "width": st.integers(0, 64),
                                    "height": st.integers(0, 64)}),
    st.fixed_dictionaries({"type": st.just("select"),
                           "channels": st.lists(st.integers(-1, 4), max_size=4)}))
config = st.fixed_dictionaries(
    {"stages": st.lists(st.one_of(bank, other), min_size=0, max_size=4)},
    optional={"encode": st.fixed_dictionaries(
        {}, optional={"policy": st.sampled_from(["saturate", "abs", "normalize"]),
                      "range": st.one_of(st.just("per-frame"), st.lists(number, max_size=3)),
                      "select": st.lists(st.integers(0, 4), max_size=4),
                      "mosaic": st.booleans()}),
        "output": st.sampled_from(["out.mkv", "out.npy", "frames/", "out.xyz"])})


def _breakage(text: str, data: st.DataObject) -> str:
    """The config text, or a broken version of it."""
    how = data.draw(st.sampled_from(["none", "none", "cut", "flip", "tab"]))
    if how == "cut":
        return text[: data.draw(st.integers(0, max(len(text) - 1, 0)))]
    if how == "flip" and text:
        at = data.draw(st.integers(0, len(text) - 1))
        return text[:at] + data.draw(st.sampled_from(list(":[]{}-&*!%\t\"'\x00é"))) + \
            text[at + 1:]
    if how == "tab":
        return text.replace("  ", "\t", 1)
    return text


def _fresh(tmp: Path) -> tuple[Path, Path]:
    """A folder for one case and a folder beside it that it must not touch."""
    import tempfile

    base = Path(tempfile.mkdtemp(dir=tmp))
    (base / "outside").mkdir()
    (base / "outside" / "notes.txt").write_text("not weights\n")
    case = base / "case"
    case.mkdir()
    np.save(case / "w.npy", np.ones((3, 3)))
    return base, case


def _check(base: Path, argv: list, cwd: Path) -> None:
    """Run ``argv`` in ``cwd``: a SPEC exit code, at most one error line, no traceback
    (harness.verify), and the folder beside ``cwd`` untouched."""
    before = snapshot(base / "outside")
    result = verify(Case(argv, 0, codes=SPEC_CODES, timeout=60), cwd)
    event(f"exit {result.returncode}")  # --hypothesis-show-statistics shows the mix
    assert snapshot(base / "outside") == before, "a file outside the case's folder changed"


@FUZZ
@given(data=st.data())
def test_random_configs_end_with_a_spec_exit_code(tmp_path, data):
    configs_before = snapshot(ROOT / "configs")
    base, cwd = _fresh(tmp_path)
    text = _breakage(yaml.safe_dump(data.draw(config), sort_keys=False), data)
    (cwd / "c.yaml").write_text(text)
    _check(base, ["run", "c.yaml", "-q", "-s", "synthetic:40x30:2"], cwd)
    assert snapshot(ROOT / "configs") == configs_before


# ------------------------------------------------------------------ damaged media
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media")
    files = {}
    for ext in (".mkv", ".avi", ".mp4"):
        write_clip(folder / f"clip{ext}", n=12, width=48, height=32)
        files[ext] = (folder / f"clip{ext}").read_bytes()
    ok, png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (32, 48, 3),
                                                                      dtype=np.uint8))
    files[".png"] = png.tobytes()
    return files


def _damage(raw: bytes, data: st.DataObject) -> bytes:
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["cut", "flip", "zero"]))
        if not out:
            break
        at = data.draw(st.integers(0, len(out) - 1))
        if how == "cut":
            del out[at:]
        elif how == "flip":
            n = data.draw(st.integers(1, 64))
            out[at : at + n] = data.draw(st.binary(min_size=n, max_size=n))
        else:
            n = data.draw(st.integers(1, 4096))
            out[at : at + n] = bytes(min(n, len(out) - at))
    return bytes(out)


@FUZZ
@given(data=st.data())
def test_damaged_clips_end_with_a_spec_exit_code(tmp_path, media, data):
    base, cwd = _fresh(tmp_path)
    ext = data.draw(st.sampled_from([".mkv", ".avi", ".mp4"]))
    (cwd / f"in{ext}").write_bytes(_damage(media[ext], data))
    out = data.draw(st.sampled_from(["out.mkv", "out.mp4", "out.npy"]))
    _check(base, ["run", EDGES, "-q", "-s", f"in{ext}", "-o", out], cwd)


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_pngs_end_with_a_spec_exit_code(tmp_path, media, data):
    base, cwd = _fresh(tmp_path)
    (cwd / "seq").mkdir()
    damaged = data.draw(st.integers(0, 3))
    for i in range(4):
        raw = media[".png"]
        (cwd / "seq" / f"f{i}.png").write_bytes(_damage(raw, data) if i == damaged else raw)
    _check(base, ["run", EDGES, "-q", "-s", "seq", "-o", "out/"], cwd)
