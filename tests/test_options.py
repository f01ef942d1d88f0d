"""Option parsing: canonical borders, every library's alias, and the refused bare 'reflect'."""

from __future__ import annotations

import pytest

from pipeline import ConfigError
from pipeline.options import BORDERS, parse_activation, parse_border, parse_padding, parse_pair

ALIASES = {
    "zero": ["zero", "zeros", "ZEROS"],
    "constant": ["constant", "fill", "grid-constant", "BORDER_CONSTANT", "cv2.BORDER_CONSTANT"],
    "replicate": ["replicate", "nearest", "edge", "BORDER_REPLICATE"],
    "symmetric": ["symmetric", "symm", "grid-mirror", "BORDER_REFLECT", "SYMMETRIC"],
    "reflect101": ["reflect101", "reflect_101", "mirror", "BORDER_REFLECT_101",
                   "BORDER_REFLECT101", "BORDER_DEFAULT"],
    "wrap": ["wrap", "circular", "grid-wrap", "BORDER_WRAP"],
}


@pytest.mark.parametrize(("canonical", "alias"),
                         [(c, a) for c, names in ALIASES.items() for a in names])
def test_border_aliases(canonical, alias):
    assert parse_border(alias) == canonical


def test_every_canonical_border_has_aliases():
    assert set(ALIASES) == set(BORDERS)


@pytest.mark.parametrize("word", ["reflect", "REFLECT", "Reflect"])
def test_bare_reflect_is_refused_naming_both_meanings(word):
    with pytest.raises(ConfigError) as info:
        parse_border(word)
    message = str(info.value)
    assert "ambiguous" in message
    assert "scipy.ndimage" in message and "'symmetric'" in message
    assert "numpy/PyTorch/TensorFlow" in message and "'reflect101'" in message


@pytest.mark.parametrize("bad", ["mirrored", 4, None, ""])
def test_unknown_border(bad):
    with pytest.raises(ConfigError, match=r"border=.* is not allowed; expected zero \| constant"):
        parse_border(bad)


def test_padding_forms():
    assert parse_padding("SAME").kind == "same"
    assert parse_padding(2).pixels == (2, 2, 2, 2)
    assert parse_padding([1, 2, 3, 4]).pixels == (1, 2, 3, 4)
    for bad in (-1, [1, 2], [1, 2, 3, -4], "half", True, 1.5):
        with pytest.raises(ConfigError, match="padding="):
            parse_padding(bad)


def test_pairs_and_activations():
    assert parse_pair("stride", 2, minimum=1) == (2, 2)
    assert parse_pair("dilation", [1, 3], minimum=1) == (1, 3)
    for bad in (True, 0, [1], [1, 2, 3], 1.0):
        with pytest.raises(ConfigError, match="stride="):
            parse_pair("stride", bad, minimum=1)
    assert str(parse_activation("clip(0, 255)")) == "clip(0, 255)"
    assert parse_activation(None).name == parse_activation("linear").name == "none"


def test_border_table_matches_each_library():
    """engine/border.py's one table: each canonical border is the same padding in OpenCV,
    numpy.pad and the C kernels' code list, and covers exactly the canonical names."""
    import cv2
    import numpy as np

    from pipeline.engine.border import BORDERS as TABLE

    assert tuple(TABLE) == BORDERS
    assert sorted({b.c for b in TABLE.values()}) == [0, 1, 2, 3, 4]
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    for name, b in TABLE.items():
        ours = cv2.copyMakeBorder(x, 2, 1, 3, 2, b.cv2, value=0)
        np.testing.assert_array_equal(ours, np.pad(x, ((2, 1), (3, 2)), mode=b.numpy), name)


def test_yaml_stage_and_keywords_build_the_same_options(tmp_path):
    """One parser: a YAML bank stage's options equal FilterBank's from the same keywords."""
    import numpy as np

    from pipeline import FilterBank, load_config
    from pipeline.options import BankOptions

    values = {"op": "convolve", "mode": "dense", "groups": 1, "padding": [1, 2, 3, 4],
              "align": "opencv", "border": "cv2.BORDER_REFLECT", "border_value": 2,
              "stride": [2, 1], "dilation": 2, "activation": "clip(0, 1)", "layout": "HWIO",
              "method": "direct", "dtype": "float64", "measure": False}
    text = "stages:\n  - type: bank\n    weights: [[1, 2], [3, 4]]\n" + "".join(
        f"    {k}: {v if not isinstance(v, str) else repr(v)}\n".replace("False", "false")
        for k, v in values.items())
    (tmp_path / "c.yaml").write_text(text)
    stage = load_config(tmp_path / "c.yaml").stages[0]
    api = FilterBank(np.ones((2, 2)), **values).options
    assert stage.options == api == BankOptions(**values)
    assert api.stride == (2, 1) and api.border == "symmetric" and api.layout == "hwio"


def test_options_object_is_frozen_and_reparsed_on_replace():
    import dataclasses

    from pipeline.options import BankOptions

    o = BankOptions(stride=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.stride = (1, 1)  # type: ignore[misc]
    assert dataclasses.replace(o, border="edge").border == "replicate"
    with pytest.raises(ConfigError, match="full' needs stride 1"):
        dataclasses.replace(o, padding="full")
    with pytest.raises(TypeError, match="boarder"):
        BankOptions(boarder="zero")  # type: ignore[call-arg]
