"""The model and weight loaders fuzzed (RELIABILITY U1-U3): mutated bytes of small valid
files (.keras and each of its members, .h5, .onnx, .safetensors, .npz) and wrong JSON
types or attribute values in valid ones, each run by the CLI under a bounded address
space. Every case ends with exit 0 or 2 (never 70, never a crash), at most one error line,
no traceback, and nothing outside its folder read into a kernel. Run longer by hand with
``PIPELINE_FUZZ_EXAMPLES=300``."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Case, verify  # noqa: E402
from models import (  # noqa: E402
    h5_file,
    keras_config,
    keras_file,
    model_config,
    npz_file,
    onnx_file,
    safetensors_file,
    weights_config,
)

MEMORY = 1536 << 20  # the address space each run may map
EXAMPLES = max(int(__import__("os").environ.get("PIPELINE_FUZZ_EXAMPLES", "15")) // 3, 1)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


class Seeds(dict):
    def __repr__(self) -> str:  # a failing example's report, without every byte
        return f"Seeds({sorted(self)})"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """The valid files each mutation starts from."""
    folder = tmp_path_factory.mktemp("seeds")
    made = {"keras": keras_file(folder / "m.keras"), "h5": h5_file(folder / "m.h5"),
            "onnx": onnx_file(folder / "m.onnx"),
            "safetensors": safetensors_file(folder / "w.safetensors"),
            "npz": npz_file(folder / "w.npz")}
    return Seeds({kind: path.read_bytes() for kind, path in made.items()})


def _mutated(raw: bytes, data: st.DataObject) -> bytes:
    """Bytes flipped, runs zeroed or overwritten, or the tail cut."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if not out:
            break
        at = data.draw(st.integers(0, len(out) - 1), label="at")
        how = data.draw(st.sampled_from(["flip", "flip", "run", "zero", "cut"]), label="how")
        if how == "flip":
            out[at] ^= data.draw(st.integers(1, 255))
        elif how == "run":
            n = data.draw(st.integers(1, 32))
            out[at:at + n] = data.draw(st.binary(min_size=n, max_size=n))
        elif how == "zero":
            n = data.draw(st.integers(1, 512))
            out[at:at + n] = bytes(len(out[at:at + n]))
        else:
            del out[at:]
    return bytes(out)


def _run(tmp: Path, config: Path) -> None:
    result = verify(Case(["run", config, "-q", "-s", "synthetic:40x30:3", "-o", "null"], 0,
                         codes=frozenset({0, 2}), timeout=60, address_space=MEMORY), tmp)
    event(f"exit {result.returncode}")
    assert "/etc/passwd" not in result.stderr or "external" in result.stderr


def _case_folder(tmp: Path) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(dir=tmp))


@FUZZ
@given(data=st.data())
def test_mutated_keras_files(tmp_path, seeds, data):
    """The zip itself, or one member mutated and zipped again."""
    cwd = _case_folder(tmp_path)
    target = data.draw(st.sampled_from(["zip", "config.json", "model.weights.h5",
                                        "metadata.json"]))
    if target == "zip":
        (cwd / "m.keras").write_bytes(_mutated(seeds["keras"], data))
    else:
        members = {}
        with zipfile.ZipFile(io.BytesIO(seeds["keras"])) as z:
            for name in z.namelist():
                members[name] = z.read(name)
        members[target] = _mutated(members[target], data)
        keras_file(cwd / "m.keras", members=members)
    _run(cwd, model_config(cwd, cwd / "m.keras"))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) |
                    st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _places(node: Any, at: tuple = ()) -> list[tuple]:
    """Every path into a JSON tree (dict keys, list indices)."""
    found = [at]
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        found += _places(value, (*at, key))
    return found


def _replaced(tree: Any, at: tuple, value: Any) -> Any:
    if not at:
        return value
    tree[at[0]] = _replaced(tree[at[0]], at[1:], value)
    return tree


@FUZZ
@given(data=st.data())
def test_keras_configs_with_wrong_types(tmp_path, data):
    """A node of a valid config.json (or an .h5's model_config) replaced by any JSON."""
    cwd = _case_folder(tmp_path)
    config = keras_config()
    at = data.draw(st.sampled_from(_places(config)), label="place")
    config = _replaced(config, at, data.draw(JSON, label="value"))
    if data.draw(st.booleans(), label="h5"):
        model = h5_file(cwd / "m.h5", config=config)
    else:
        model = keras_file(cwd / "m.keras", config=json.dumps(config).encode())
    _run(cwd, model_config(cwd, model))


@FUZZ
@given(data=st.data())
def test_mutated_h5_files(tmp_path, seeds, data):
    cwd = _case_folder(tmp_path)
    (cwd / "m.h5").write_bytes(_mutated(seeds["h5"], data))
    _run(cwd, model_config(cwd, cwd / "m.h5"))


@FUZZ
@given(data=st.data())
def test_mutated_onnx_files(tmp_path, seeds, data):
    cwd = _case_folder(tmp_path)
    (cwd / "m.onnx").write_bytes(_mutated(seeds["onnx"], data))
    _run(cwd, model_config(cwd, cwd / "m.onnx"))


ATTRIBUTES = st.sampled_from(["group", "pads", "strides", "dilations", "kernel_shape",
                              "auto_pad"])


@FUZZ
@given(data=st.data())
def test_onnx_conv_attributes(tmp_path, data):
    """A Conv attribute set to any int, list of ints or string."""
    cwd = _case_folder(tmp_path)
    name = data.draw(ATTRIBUTES, label="attribute")
    number = st.integers(-2**40, 2**40) | st.integers(-2, 8)
    value = data.draw(number | st.lists(number, min_size=1, max_size=6) |
                      st.sampled_from(["VALID", "SAME_UPPER", "SAME_LOWER", "NOTSET", "x"]),
                      label="value")
    _run(cwd, model_config(cwd, onnx_file(cwd / "m.onnx", **{name: value})))


@FUZZ
@given(data=st.data())
def test_mutated_weight_files(tmp_path, seeds, data):
    """.safetensors and .npz weights and bias ({file, key}) with mutated bytes."""
    cwd = _case_folder(tmp_path)
    kind = data.draw(st.sampled_from(["safetensors", "npz"]))
    path = cwd / f"w.{kind}"
    path.write_bytes(_mutated(seeds[kind], data))
    keys = ("conv.weight", "conv.bias") if kind == "safetensors" else ("weight", "bias")
    _run(cwd, weights_config(cwd, path, *keys))
