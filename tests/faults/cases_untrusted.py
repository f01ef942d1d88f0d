"""Fault matrix group U (RELIABILITY.md rows U1-U4): model and weight files from
elsewhere, and geometry that makes no sense. Every case: exit 2 with one line naming the
file and the place in it, quickly, within a bounded address space, nothing written, and
nothing outside the file read."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
from cases_config import bank
from harness import Case, fault

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import (  # noqa: E402
    KERNEL,
    h5_file,
    keras_config,
    keras_file,
    keras_weights,
    model_config,
    onnx_file,
    weights_config,
)

BOX = "{builtin: box, size: 3}"
MEMORY = 1536 << 20  # address space of a refused run: a plain run needs under 1 GiB here
SECONDS = 10.0  # a refusal comes before anything big is read or planned


def refused(tmp: Path, config: Path, message: str, **kw) -> Case:
    out = tmp / "out.mkv"
    return Case(["run", config, "-s", "synthetic:64x48:3", "-o", out], 2, message,
                outputs={out: "absent"}, address_space=MEMORY, max_seconds=SECONDS, **kw)


def _bomb(path: Path, gib: int = 1) -> Path:
    """A .keras whose config.json inflates to ``gib`` GiB of spaces (about 5 MB here)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("metadata.json", "{}")
        with z.open("config.json", "w", force_zip64=True) as member:
            member.write(b'{"class_name": "Functional", "x": "')
            chunk = b" " * (1 << 24)
            for _ in range(64 * gib):
                member.write(chunk)
            member.write(b'"}')
        z.writestr("model.weights.h5", keras_weights())
    return path


@fault("U1a", "untrusted", ".keras whose config.json inflates to 1 GiB")
def u1a(tmp):
    model = _bomb(tmp / "bomb.keras")
    return refused(tmp, model_config(tmp, model),
                   r"c\.yaml:\d+:\d+: stages\[0\]\.file: \S*bomb\.keras: config\.json inflates "
                   r"past 16 MiB")


def _external(target: str):
    def kernel(group, name):
        group.create_dataset(name, shape=KERNEL.shape, dtype="f4",
                             external=[(target, 0, h5py.h5f.UNLIMITED)])
    return kernel


@fault("U2a", "untrusted", "HDF5 dataset with external storage on /etc/passwd (.keras)")
def u2a(tmp):
    model = keras_file(tmp / "m.keras", weights=keras_weights(_external("/etc/passwd")))
    return refused(tmp, model_config(tmp, model),
                   r"m\.keras: model\.weights\.h5: /layers/conv2d/vars/0 keeps its data in "
                   r"/etc/passwd \(external storage\)")


@fault("U2b", "untrusted", "HDF5 dataset with external storage on /dev/zero (.h5)")
def u2b(tmp):
    model = h5_file(tmp / "m.h5", kernel=_external("/dev/zero"))
    return refused(tmp, model_config(tmp, model),
                   r"m\.h5: /model_weights/conv1/conv1/kernel keeps its data in /dev/zero")


@fault("U2c", "untrusted", "HDF5 external link to another file")
def u2c(tmp):
    other = tmp / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.create_dataset("k", data=KERNEL)

    def link(group, name):
        group[name] = h5py.ExternalLink(str(other), "/k")

    model = h5_file(tmp / "m.h5", kernel=link)
    return refused(tmp, model_config(tmp, model),
                   r"m\.h5: /model_weights/conv1/conv1/kernel is an external link")


@fault("U2d", "untrusted", "HDF5 soft link")
def u2d(tmp):
    def link(group, name):
        group.create_dataset("real", data=KERNEL)
        group[name] = h5py.SoftLink(f"{group.name}/real")

    model = h5_file(tmp / "m.h5", kernel=link)
    return refused(tmp, model_config(tmp, model), r"m\.h5: .*kernel is a soft link")


@fault("U2e", "untrusted", "HDF5 virtual dataset over another file")
def u2e(tmp):
    other = tmp / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.create_dataset("k", data=KERNEL)

    def virtual(group, name):
        layout = h5py.VirtualLayout(shape=KERNEL.shape, dtype="f4")
        layout[...] = h5py.VirtualSource(str(other), "k", shape=KERNEL.shape)
        group.create_virtual_dataset(name, layout)

    model = h5_file(tmp / "m.h5", kernel=virtual)
    return refused(tmp, model_config(tmp, model),
                   r"m\.h5: /model_weights/conv1/conv1/kernel is a virtual dataset")


@fault("U2f", "untrusted", "ONNX tensor with external data beside the file")
def u2f(tmp):
    import onnx

    model = onnx_file(tmp / "m.onnx")
    onnx.save(onnx.load(model), model, save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    return refused(tmp, model_config(tmp, model),
                   r"m\.onnx: initializer 'W' keeps its data outside the file \(ONNX external "
                   r"data\)")


@fault("U3a", "untrusted", "3 KB HDF5 declaring a 40 GiB kernel")
def u3a(tmp):
    def huge(group, name):
        group.create_dataset(name, shape=(3, 3, 3, 400_000_000), dtype="f4",
                             chunks=(3, 3, 3, 1000))

    model = h5_file(tmp / "m.h5", kernel=huge)
    return refused(tmp, model_config(tmp, model),
                   r"m\.h5: /model_weights/conv1/conv1/kernel: shape \(3, 3, 3, 400000000\) "
                   r"holds 10800000000 values; limit \d+")


@fault("U3b", "untrusted", "HDF5 kernel declaring more bytes than the file holds")
def u3b(tmp):
    def empty(group, name):
        group.create_dataset(name, shape=KERNEL.shape, dtype="f4")  # never written

    model = keras_file(tmp / "m.keras", weights=keras_weights(empty))
    return refused(tmp, model_config(tmp, model),
                   r"m\.keras: model\.weights\.h5: /layers/conv2d/vars/0: declares 432 bytes "
                   r"of data and holds 0")


@fault("U3c", "untrusted", ".keras config nested 200,000 deep")
def u3c(tmp):
    model = keras_file(tmp / "m.keras", config=b"[" * 200_000 + b"]" * 200_000)
    return refused(tmp, model_config(tmp, model),
                   r"m\.keras: config\.json: nested too deep")


def _config_with(change) -> dict:
    config = keras_config()
    change(config)
    return config


@fault("U3d", "untrusted", ".keras config with layers: \"conv\"")
def u3d(tmp):
    config = _config_with(lambda c: c["config"].update(layers="conv"))
    model = keras_file(tmp / "m.keras", config=config)
    return refused(tmp, model_config(tmp, model),
                   r"m\.keras: config\.json: config\.layers: expected a list, got 'conv'")


@fault("U3e", "untrusted", ".keras layer with config: null")
def u3e(tmp):
    config = _config_with(lambda c: c["config"]["layers"][1].update(config=None))
    model = keras_file(tmp / "m.keras", config=config)
    return refused(tmp, model_config(tmp, model),
                   r"m\.keras: config\.json: config\.layers\[1\]\.config: expected an object, "
                   r"got null")


@fault("U3f", "untrusted", ".keras metadata.json a list")
def u3f(tmp):
    model = keras_file(tmp / "m.keras", meta=[1, 2])
    return refused(tmp, model_config(tmp, model),
                   r"m\.keras: metadata\.json: expected an object, got \[1, 2\]")


@fault("U3g", "untrusted", ".h5 model_config with a string where the strides are")
def u3g(tmp):
    config = _config_with(lambda c: c["config"]["layers"][1]["config"].update(strides="x"))
    model = h5_file(tmp / "m.h5", config=config)
    return refused(tmp, model_config(tmp, model),
                   r"m\.h5: layer 'conv1' \(Conv2D\): cannot read it")


@fault("U3h", "untrusted", "ONNX tensor of 10^6 x 10^6 with no data")
def u3h(tmp):
    from onnx import TensorProto

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])
    model = onnx_file(tmp / "m.onnx", weights=w)
    return refused(tmp, model_config(tmp, model),
                   r"m\.onnx: initializer 'W' of shape \[1000000, 1000000\] holds "
                   r"1000000000000 values; limit")


@fault("U3i", "untrusted", "ONNX tensor holding fewer values than its shape")
def u3i(tmp):
    from onnx import TensorProto

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3, 3, 3],
                    raw_data=np.zeros(10, np.float32).tobytes())
    model = onnx_file(tmp / "m.onnx", weights=w)
    return refused(tmp, model_config(tmp, model),
                   r"m\.onnx: initializer 'W' of shape \[4, 3, 3, 3\] declares 108 values "
                   r"and holds 10")


@fault("U3j", "untrusted", "ONNX Conv with group 0")
def u3j(tmp):
    model = onnx_file(tmp / "m.onnx", group=0)
    return refused(tmp, model_config(tmp, model),
                   r"m\.onnx: node 'conv' \(Conv\): cannot read it: groups 0 does not divide")


@fault("U3m", "untrusted", "ONNX Conv whose groups read more channels than the graph's "
       "input has (found by the fuzzer: exit 3 at the first frame, not 2 at load)")
def u3m(tmp):
    model = onnx_file(tmp / "m.onnx", group=2)
    return refused(tmp, model_config(tmp, model),
                   r"m\.onnx: conv \+ relu reads 6 channels, and 3 reach it in the model itself")


@fault("U3k", "untrusted", "ONNX Conv padded by 10^9")
def u3k(tmp):
    model = onnx_file(tmp / "m.onnx", pads=[10**9] * 4)
    return refused(tmp, model_config(tmp, model),
                   r"c\.yaml:2:\d+: stages\[0\]\.file: \S*m\.onnx: conv( \+ relu)?: "
                   r"padding=\[1000000000, .*is not allowed")


@fault("U3l", "untrusted", "safetensors header declaring a tensor past the file's end")
def u3l(tmp):
    header = json.dumps({"w": {"dtype": "F32", "shape": [100000, 100000],
                               "data_offsets": [0, 40_000_000_000]},
                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
    path = tmp / "w.safetensors"
    raw = header.encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(16))
    return refused(tmp, weights_config(tmp, path, "w", "b"),
                   r"stages\[0\]\.weights: .*w\.safetensors: ")


@fault("U4a", "untrusted", "a bank padded by 10^9")
def u4a(tmp):
    return refused(tmp, bank(tmp, BOX, "    padding: 1000000000\n"),
                   r"c\.yaml:5:\d+: stages\[0\]\.padding: padding=1000000000 is not allowed; "
                   r"expected .*0\.\.4096")


@fault("U4b", "untrusted", "a dilation of 10^9")
def u4b(tmp):
    return refused(tmp, bank(tmp, BOX, "    dilation: [1, 1000000000]\n"),
                   r"c\.yaml:5:\d+: stages\[0\]\.dilation: dilation=\[1, 1000000000\] is not "
                   r"allowed")


@fault("U4c", "untrusted", "padding within bounds, bank after bank, past the memory limit")
def u4c(tmp):
    path = tmp / "c.yaml"
    stage = "  - {type: bank, op: correlate, weights: {builtin: box, size: 3}, padding: 4096}\n"
    path.write_text("stages:\n" + stage * 6)
    out = tmp / "out.mkv"
    return Case(["run", path, "-s", "synthetic:64x48:3", "-o", out], 3,
                r"synthetic.*need about [\d.]+ GiB; --max-memory 4\.0 GiB",
                outputs={out: "absent"}, address_space=MEMORY, max_seconds=SECONDS)
