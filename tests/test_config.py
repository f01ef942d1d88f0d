"""YAML configs: strict fields, and one-line errors that name file, line, column and field."""

from __future__ import annotations

import time

import pytest

from pipeline import ConfigError, load_config
from pipeline.config import BankStage, Limits

BANK = "stages:\n  - type: bank\n    op: correlate\n    weights: [[1, 2], [3, 4]]\n"


def write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text: str, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), **kw)
    return str(info.value)


def test_spec_example_loads(tmp_path):
    config = load_config(write(tmp_path, """
source: synthetic
output: out.mkv
stages:
  - name: edges
    type: bank
    op: correlate
    mode: dense
    weights:
      - {builtin: sobel, axis: 0, size: 3}
      - {builtin: sobel, axis: 1, size: 3}
    padding: same
    border: reflect101
    activation: none
    method: auto
  - {name: magnitude, type: reduce, op: l2}
encode: {policy: saturate, range: [0, 255]}
"""))
    bank = config.stages[0]
    assert isinstance(bank, BankStage)
    o = bank.options
    assert (o.op, o.border, str(o.padding), o.method) == ("correlate", "reflect101", "same", "auto")
    assert config.encode.bounds == (0.0, 255.0)


@pytest.mark.parametrize(("text", "expected"), [
    (BANK + "    kernal: 3\n", "c.yaml:5:5: stages[0].kernal: unknown field"),
    (BANK + "    boarder: zero\n", "c.yaml:5:5: stages[0].boarder: unknown field "
                                  "(did you mean 'border'?)"),
    (BANK.replace("[3, 4]", "[3, x]"), "c.yaml:4:5: stages[0].weights: weights[1][1]: "
                                       "expected a number, got 'x'"),
    (BANK.replace("[3, 4]", "[3]"), "ragged: rows must all have the same length"),
    (BANK.replace("[3, 4]", "[3, .nan]"), "c.yaml:4:5: stages[0].weights: weights[1][1] contains "
                                          "NaN or Inf"),
    (BANK.replace("op: correlate", "op: no"), "c.yaml:3:5: stages[0].op: op=False is not "
                                              "allowed; expected correlate | convolve (YAML "
                                              "reads yes/no/on/off as booleans"),
    (BANK.replace("op: correlate", "op: conv"), "op='conv' is not allowed"),
    (BANK + "    border: reflect\n", "border 'reflect' is ambiguous"),
    (BANK.replace("    op: correlate\n", ""), "stages[0].op: Field required"),
    ("stages:\n  - type: blur\n", "type must be one of bank, model, reduce, convert, resize, select"),
    ("stages:\n  - op: sum\n", "missing 'type'"),
    ("stages: [1, 2\n", "c.yaml:2:1: did not find expected ',' or ']'"),
    ("size: 3\nsize: 9\n", "c.yaml:2:1: duplicate key 'size' (first at line 1)"),
    ("", "config is empty"),
    ("- a\n- b\n", "config must be a mapping (key: value), got a list"),
    ("stages: []\n", "stages: List should have at least 1 item"),
    ("kernel: !!python/object/apply:os.system ['touch PWNED']\n",
     "c.yaml:1:9: unsupported YAML tag"),
    (BANK + "encode: {policy: normalize}\n", "policy 'normalize' needs range"),
    (BANK + "encode: {range: [5, 1]}\n", "range must be [lo, hi] with finite lo < hi"),
    (BANK + "encode: {select: [0, 1]}\n", "select takes 1 channel (gray) or 3"),
    (BANK.replace("weights: [[1, 2], [3, 4]]", "weights: {file: w.npy, layout: hwoi}"),
     "weights.layout: layout='hwoi' is not allowed; expected oihw | hwio"),
    (BANK.replace("weights: [[1, 2], [3, 4]]", "weights: {file: w.npy, lay: hwio}"),
     "weights.lay: unknown field (expected file, key, layout)"),
    (BANK.replace("weights: [[1, 2], [3, 4]]", "weights: {file: w.npy, layout: hwio}") +
     "    layout: oihw\n", "layout 'oihw' and weights.layout 'hwio' differ"),
    (BANK + "    groups: 0\n", "c.yaml:5:5: stages[0].groups: groups=0 is not allowed; "
                             "expected an int >= 1"),
    (BANK + "    padding: half\n", "padding='half' is not allowed"),
    (BANK + "    stride: 0\n", "stride=0 is not allowed"),
    (BANK + "    padding: full\n    stride: 2\n", "c.yaml:6:5: stages[0].stride: padding='full' "
                                              "needs stride 1, got stride=[2, 2]"),
    ("stages:\n  - {type: resize}\n", "resize takes either scale, or both width and height"),
])
def test_errors_name_file_line_and_field(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_hostile_tag_runs_nothing(tmp_path):
    error_of(tmp_path, f"x: !!python/object/apply:os.system ['touch {tmp_path}/PWNED']\n")
    assert not (tmp_path / "PWNED").exists()


def test_limits_are_checked_before_anything_is_built(tmp_path):
    row = "[" + ", ".join(["1.0"] * 100) + "]"
    big = "stages:\n  - type: bank\n    op: correlate\n    weights: [" + \
        ", ".join([row] * 100) + "]\n"
    assert "100 kernel rows/columns exceed the limit 63" in error_of(tmp_path, big)
    load_config(write(tmp_path, big, "ok.yaml"), Limits(kernel=100))  # raisable by flag
    many = "stages:\n  - type: bank\n    op: correlate\n    weights:\n" + \
        "      - {builtin: box}\n" * 65
    assert "65 kernels exceed the limit 64" in error_of(tmp_path, many)


@pytest.mark.timing
def test_alias_bomb_fails_fast(tmp_path):
    """8 KB of YAML describing 64 × 1000×1000 floats is refused in well under a second."""
    r = "r: &r [" + ", ".join(["1.0"] * 1000) + "]\n"
    k = "k: &k [" + ", ".join(["*r"] * 1000) + "]\n"
    stages = "stages:\n" + "  - {type: bank, op: correlate, weights: *k}\n" * 64
    start = time.perf_counter()
    message = error_of(tmp_path, r + k + stages)
    assert time.perf_counter() - start < 1.0
    assert "YAML nodes" in message


def test_size_limit_before_parsing(tmp_path):
    path = write(tmp_path, "# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"config is 2.0 MiB; limit 1 MiB"):
        load_config(path)


def test_unreadable_and_odd_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config: No such file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"stages: [caf\xe9]\n")
    with pytest.raises(ConfigError, match="not valid UTF-8 at byte 12"):
        load_config(bad)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"stages: []\x00\n")
    with pytest.raises(ConfigError, match="NUL byte"):
        load_config(nul)


def test_weight_forms(tmp_path):
    config = load_config(write(tmp_path, """
stages:
  - {type: bank, op: correlate, weights: {builtin: gaussian, sigma: 2}}
  - {type: bank, op: convolve, weights: [[1, 2], [3, 4]]}
  - {type: bank, op: correlate, weights: [{builtin: box, size: 2}, [[1, 0], [0, 1]]]}
  - {type: bank, op: correlate, weights: {file: w.npz, key: conv1}, layout: hwio}
  - {type: bank, op: correlate, weights: [[[[1]]], [[[2]]]]}
"""))
    assert len(config.stages) == 5
    assert config.relative("w.npz") == tmp_path / "w.npz"


@pytest.mark.parametrize("where", ["file", "stage", "both"])
def test_weight_file_layout_spec_example(tmp_path, where):
    """SPEC section 4's ``weights: {file: w.npy, layout: hwio}``: the file's layout is the
    bank's (also given at the stage, equal, it is accepted); the result is Keras's."""
    import numpy as np

    from pipeline import FilterBank
    from pipeline.frames import FrameFormat
    from pipeline.stages import build_chain

    rng = np.random.default_rng(3)
    hwio = rng.normal(size=(3, 3, 2, 4))
    np.save(tmp_path / "w.npy", hwio)
    weights = "{file: w.npy, layout: hwio}" if where != "stage" else "{file: w.npy}"
    stage_layout = "    layout: HWIO\n" if where != "file" else ""
    config = load_config(write(tmp_path, "stages:\n  - type: bank\n    op: correlate\n"
                               f"    weights: {weights}\n{stage_layout}"))
    assert config.stages[0].options.layout == "hwio"
    chain = build_chain(config, FrameFormat(9, 8, 2, "uint8"))
    x = rng.integers(0, 255, size=(9, 8, 2), dtype=np.uint8)
    expected = FilterBank(hwio, layout="hwio")(x)
    np.testing.assert_allclose(chain(x), expected, rtol=1e-6, atol=1e-4)
    assert chain.out_shape == (9, 8, 4)
