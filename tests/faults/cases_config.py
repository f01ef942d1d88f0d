"""Fault matrix group C: configuration (YAML). Every case: exit 2, no output, nothing run."""

from __future__ import annotations

import numpy as np
from harness import Case, fault

BANK = "stages:\n  - type: bank\n    op: correlate\n    weights: {weights}\n{extra}"


def bank(tmp, weights="[[1, 2], [3, 4]]", extra="", name="c.yaml"):
    path = tmp / name
    path.write_text(BANK.format(weights=weights, extra=extra))
    return path


def refused(tmp, config, message, **kw) -> Case:
    out = tmp / "out.mkv"
    return Case(["run", config, "-s", "synthetic:32x32:3", "-o", out], 2, message,
                outputs={out: "absent"}, **kw)


@fault("C1", "config", "hostile YAML tag runs nothing")
def c1(tmp):
    path = tmp / "c.yaml"
    path.write_text(f"kernel: !!python/object/apply:os.system ['touch {tmp}/PWNED']\n")

    def nothing_ran(result):
        assert not (tmp / "PWNED").exists()

    return refused(tmp, path, r"c\.yaml:1:9: unsupported YAML tag", check=nothing_ran)


@fault("C2", "config", "YAML syntax error")
def c2(tmp):
    path = tmp / "c.yaml"
    path.write_text("stages:\n  - {type: bank, size: [3, 3\n")
    return refused(tmp, path, r"c\.yaml:\d+:\d+: ")


@fault("C3", "config", "unknown key / typo")
def c3(tmp):
    return refused(tmp, bank(tmp, extra="    boarder: zero\n"),
                   r"c\.yaml:5:5: stages\[0\]\.boarder: unknown field \(did you mean 'border'\?\)")


@fault("C4a", "config", "a string in a kernel")
def c4a(tmp):
    return refused(tmp, bank(tmp, "[[1, x], [3, 4]]"),
                   r"c\.yaml:4:5: stages\[0\]\.weights: .*\[0\]\[1\]: expected a number")


@fault("C4b", "config", "YAML 1.1 boolean where a word is expected")
def c4b(tmp):
    return refused(tmp, bank(tmp, extra="    mode: no\n"),
                   r"stages\[0\]\.mode: mode=False is not allowed.*booleans")


@fault("C4c", "config", "'on' read as a boolean in an enum field")
def c4c(tmp):
    return refused(tmp, bank(tmp, extra="    align: on\n"), r"stages\[0\]\.align: align=True")


@fault("C5a", "config", "ragged kernel")
def c5a(tmp):
    return refused(tmp, bank(tmp, "[[1, 2], [3]]"), r"rows must all have the same length")


@fault("C5b", "config", "empty kernel")
def c5b(tmp):
    return refused(tmp, bank(tmp, "[]"), r"stages\[0\]\.weights: expected")


@fault("C5c", "config", "kernel nested 5 deep")
def c5c(tmp):
    return refused(tmp, bank(tmp, "[[[[[1]]]]]"), r"stages\[0\]\.weights")


@fault("C5d", "config", "even size where the kernel needs a centre")
def c5d(tmp):
    return refused(tmp, bank(tmp, "{builtin: gaussian, sigma: 1, size: 4}"),
                   r"builtin gaussian: size=4 .* odd")


@fault("C6a", "config", "NaN in a kernel")
def c6a(tmp):
    return refused(tmp, bank(tmp, "[[1, .nan], [3, 4]]"), r"weights\[0\]\[1\] contains NaN or Inf")


@fault("C6b", "config", "-Inf as a border value")
def c6b(tmp):
    return refused(tmp, bank(tmp, extra="    border: constant\n    border_value: -.inf\n"),
                   r"stages\[0\]\.border_value")


@fault("C6c", "config", "NaN in the encode range")
def c6c(tmp):
    path = bank(tmp)
    path.write_text(path.read_text() + "encode: {range: [0, .nan]}\n")
    return refused(tmp, path, r"encode: range must be \[lo, hi\] with finite lo < hi")


@fault("C7a", "config", "100x100 inline kernel")
def c7a(tmp):
    row = "[" + ", ".join(["1"] * 100) + "]"
    return refused(tmp, bank(tmp, "[" + ", ".join([row] * 100) + "]"),
                   r"100 kernel rows/columns exceed the limit 63 \(raise with --max-kernel\)")


@fault("C7b", "config", "a built-in kernel of 1001x1001")
def c7b(tmp):
    return refused(tmp, bank(tmp, "{builtin: gaussian, sigma: 100, size: 1001}"),
                   r"stages\[0\]\.weights: 1001x1001 kernel exceeds the limit 63x63")


@fault("C7c", "config", "a small .npz declaring 10000x10000 weights (refused from its header)")
def c7c(tmp):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10000, 10000)})
    with zipfile.ZipFile(tmp / "huge.npz", "w") as z:  # a few hundred bytes on disk
        z.writestr("w.npy", header.getvalue() + b"\0" * 64)
    return refused(tmp, bank(tmp, "{file: huge.npz}"),
                   r"huge\.npz: weights of shape \(10000, 10000\) exceed the limit",
                   max_seconds=5)


@fault("C7d", "config", "a weights file larger than the limits allow (refused by its size)")
def c7d(tmp):
    np.lib.format.open_memmap(tmp / "huge.npy", mode="w+", dtype=np.float32,
                              shape=(10000, 10000))  # sparse on disk: 400 MB nominal
    return refused(tmp, bank(tmp, "{file: huge.npy}"),
                   r"huge\.npy: weights file is 381\.5 MiB; limit 125 MiB "
                   r"\(raise with --max-kernel/--max-outputs\)", max_seconds=5)


@fault("C8", "config", "alias bomb")
def c8(tmp):
    path = tmp / "c.yaml"
    r = "r: &r [" + ", ".join(["1.0"] * 1000) + "]\n"
    k = "k: &k [" + ", ".join(["*r"] * 1000) + "]\n"
    path.write_text(r + k + "stages:\n" + "  - {type: bank, op: correlate, weights: *k}\n" * 64)
    return refused(tmp, path, r"expands to more than 200000 YAML nodes", max_seconds=5)


@fault("C9", "config", "config over the size cap")
def c9(tmp):
    path = bank(tmp)
    path.write_text(path.read_text() + "# " + "x" * (2 << 20) + "\n")
    return refused(tmp, path, r"c\.yaml: config is 2\.0 MiB; limit 1 MiB")


@fault("C10", "config", "1000 kernels in one bank")
def c10(tmp):
    many = "[" + ", ".join(["{builtin: box}"] * 1000) + "]"
    return refused(tmp, bank(tmp, many), r"1000 kernels exceed the limit 64")


@fault("C11", "config", "duplicate key")
def c11(tmp):
    path = tmp / "c.yaml"
    path.write_text("stages:\n  - type: bank\n    op: correlate\n    weights: [[1]]\n"
                    "    stride: 1\n    stride: 9999\n")
    return refused(tmp, path, r"c\.yaml:6:5: duplicate key 'stride' \(first at line 5\)")


@fault("C12a", "config", "empty config")
def c12a(tmp):
    path = tmp / "c.yaml"
    path.write_text("")
    return refused(tmp, path, r"c\.yaml: config is empty")


@fault("C12b", "config", "config that is a scalar")
def c12b(tmp):
    path = tmp / "c.yaml"
    path.write_text("42\n")
    return refused(tmp, path, r"config must be a mapping \(key: value\), got a int")


@fault("C12c", "config", "config that is a list")
def c12c(tmp):
    path = tmp / "c.yaml"
    path.write_text("- a\n- b\n")
    return refused(tmp, path, r"config must be a mapping")


@fault("C12d", "config", "missing config file")
def c12d(tmp):
    return refused(tmp, tmp / "nope.yaml", r"nope\.yaml: cannot read config: No such file")


@fault("C12e", "config", "config path is a directory")
def c12e(tmp):
    (tmp / "dir.yaml").mkdir()
    return refused(tmp, tmp / "dir.yaml", r"dir\.yaml: is a directory")


@fault("C13a", "config", "non-UTF-8 bytes")
def c13a(tmp):
    path = tmp / "c.yaml"
    path.write_bytes(b"stages: [caf\xe9]\n")
    return refused(tmp, path, r"c\.yaml: config is not valid UTF-8 at byte 12")


@fault("C13b", "config", "NUL byte")
def c13b(tmp):
    path = tmp / "c.yaml"
    path.write_bytes(b"stages:\x00 []\n")
    return refused(tmp, path, r"c\.yaml: config contains a NUL byte")


@fault("C14", "config", "weights file missing")
def c14(tmp):
    return refused(tmp, bank(tmp, "{file: gone.npy}"), r"gone\.npy: cannot load weights")


@fault("C15", "config", "pickled weights file (never unpickled)")
def c15(tmp):
    np.save(tmp / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return refused(tmp, bank(tmp, "{file: obj.npy}"), r"obj\.npy: cannot load weights")


@fault("C16", "config", "unknown built-in kernel")
def c16(tmp):
    return refused(tmp, bank(tmp, "{builtin: blurr}"), r"builtin='blurr' is not a built-in")


@fault("C17", "config", "the ambiguous border 'reflect'")
def c17(tmp):
    return refused(tmp, bank(tmp, extra="    border: reflect\n"),
                   r"stages\[0\]\.border: border 'reflect' is ambiguous")


@fault("C18", "config", "a chain ending in 4 channels with no select/mosaic")
def c18(tmp):
    return refused(tmp, bank(tmp, "[{builtin: box}, {builtin: box}, {builtin: box}, "
                                  "{builtin: box}]"),
                   r"encode: the chain ends with 4 channels; .*select.*mosaic")


@fault("C19", "config", "weights for 4-channel frames on a 3-channel source")
def c19(tmp):
    np.save(tmp / "w.npy", np.ones((2, 4, 3, 3)))
    config = bank(tmp, "{file: w.npy}")
    config.write_text(config.read_text() + "encode: {select: [0]}\n")
    out = tmp / "out.mkv"
    return Case(["run", config, "-s", "synthetic:32x32:3", "-o", out], 3,
                r"stages\[0\]: bank expects 4-channel frames, got 3", outputs={out: "absent"})


# ------------------------------------------------------------------ special files (X8)
def _fifo(tmp, name):
    import os

    os.mkfifo(tmp / name)
    return tmp / name


@fault("X8a", "config", "config path is /dev/zero (read forever)")
def x8a(tmp):
    return refused(tmp, "/dev/zero", r"/dev/zero: not a regular file \(a character device\)",
                   max_seconds=10)


@fault("X8b", "config", "config path is a FIFO with no writer (blocks forever)")
def x8b(tmp):
    return refused(tmp, _fifo(tmp, "c.yaml"), r"c\.yaml: not a regular file \(a FIFO\)",
                   max_seconds=10)


@fault("X8c", "config", "config path is /dev/urandom")
def x8c(tmp):
    return refused(tmp, "/dev/urandom", r"/dev/urandom: not a regular file", max_seconds=10)


@fault("X8d", "config", "weights {file: /dev/zero}")
def x8d(tmp):
    return refused(tmp, bank(tmp, "{file: /dev/zero}"),
                   r"stages\[0\]\.weights: /dev/zero: not a regular file", max_seconds=10)


@fault("X8e", "config", "weights file is a FIFO")
def x8e(tmp):
    _fifo(tmp, "w.npy")
    return refused(tmp, bank(tmp, "{file: w.npy}"), r"w\.npy: not a regular file \(a FIFO\)",
                   max_seconds=10)


@fault("X8f", "config", "weights file is /dev/urandom")
def x8f(tmp):
    return refused(tmp, bank(tmp, "{file: /dev/urandom}"), r"/dev/urandom: not a regular file",
                   max_seconds=10)


@fault("X8g", "config", "an .npz of 10000 arrays and no key: one short line")
def x8g(tmp):
    np.savez(tmp / "many.npz", **{f"a{i}": np.ones((1, 1)) for i in range(10_000)})

    def short(result):
        assert len(result.stderr.strip()) < 400, len(result.stderr)

    return refused(tmp, bank(tmp, "{file: many.npz}"),
                   r"many\.npz: holds 10000 arrays \('a0', 'a1', .*\); say which with key",
                   check=short)
