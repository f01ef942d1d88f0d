"""YAML -> validated pydantic models (no OpenCV, no FFTW here).

The loader is PyYAML's safe one with two additions: duplicate keys are refused (PyYAML
keeps the last silently) and the file and node counts are capped before anything is
built. Every error names the file, the line and column, and the field path:
``edges.yaml:7:5: stages[0].kernal: unknown field (did you mean 'kernel'?)``.

Weights are checked against the limits while walking the YAML structure, before any
array exists, so an alias bomb describing 64 × 1000×1000 floats fails in milliseconds.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .io.codecs import OutputTarget
from .options import (
    OPTION_NAMES,
    BankOptions,
    OptionError,
    check_finite,
    parse_bias,
    parse_dtype,
    parse_layout,
    parse_method,
)
from .yamlfile import Limits, mark, node_at, read_yaml

__all__ = ["Config", "Limits", "load_config"]


# ------------------------------------------------------------------ weights
class BuiltinKernel(BaseModel):
    """``{builtin: name, <param>: value, …}``: one 2-D kernel from pipeline.kernels."""

    model_config = ConfigDict(extra="allow", strict=True)
    builtin: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FileWeights(BaseModel):
    """``{file: w.npy}`` or ``{file: w.npz, key: conv1, layout: hwio}``; relative to the
    config file. A file's ``layout`` belongs to the file: it becomes the bank's."""

    model_config = ConfigDict(extra="forbid", strict=True)
    file: str
    key: str | None = None
    layout: str | None = None


def _numbers(value: Any, depth: int, limits: Limits, where: str) -> int:
    """Check a nested list of numbers of ``depth`` levels without building it; its size."""
    if depth == 0:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        check_finite(value, where)
        return 1
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list")
    bound = limits.kernel if depth <= 2 else limits.outputs
    if len(value) > bound:
        what, flag = ("kernel rows/columns", "--max-kernel") if depth <= 2 else \
            ("kernels", "--max-outputs")
        raise ValueError(f"{where}: {len(value)} {what} exceed the limit {bound} "
                         f"(raise with {flag})")
    sizes = {_numbers(v, depth - 1, limits, f"{where}[{i}]") for i, v in enumerate(value)}
    if len(sizes) > 1:
        raise ValueError(f"{where}: ragged: rows must all have the same length")
    return len(value) * sizes.pop()


def nesting_depth(value: Any) -> int:
    """Levels of nested lists (following first items): 2 for a kernel, 4 for weights."""
    d = 0
    while isinstance(value, list) and value:
        d, value = d + 1, value[0]
    return d


def _kernel_source(v: dict[str, Any], where: str, files: bool = True
                   ) -> BuiltinKernel | FileWeights:
    if "builtin" in v:
        if not isinstance(v["builtin"], str):
            raise ValueError(f"{where}.builtin: expected a kernel name")
        return BuiltinKernel.model_validate(v)
    if "file" in v and files:
        unknown = sorted(set(v) - {"file", "key", "layout"})
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown field (expected file, key, layout)")
        if not all(isinstance(v.get(k, ""), str) for k in ("file", "key", "layout")):
            raise ValueError(f"{where}: file, key and layout must be strings")
        if "layout" in v:
            try:
                parse_layout(v["layout"])
            except OptionError as e:
                raise ValueError(f"{where}.layout: {e}") from None
        return FileWeights.model_validate(v)
    want = "builtin" if not files else "builtin or file"
    raise ValueError(f"{where}: a mapping here needs {want}")


# ------------------------------------------------------------------ stages
class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None


class BankStage(_Stage):
    """A filter bank: ``weights``, ``bias`` and every option of SPEC section 1, which
    arrive at the top level of the stage and are gathered into ``options`` (one
    BankOptions, the same object ``FilterBank`` takes)."""

    type: Literal["bank"]
    op: Any  # required in YAML (correlate, convolve differ for asymmetric kernels); see options
    weights: Any  # BuiltinKernel | FileWeights | 2-D/4-D nested lists | list of 2-D kernels
    bias: list[float] | FileWeights | None = None  # one per output channel, or {file, key}
    options: InstanceOf[BankOptions]

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        """The option fields, gathered for ``options``; a weight file's layout joins them."""
        if not isinstance(data, dict):
            return data
        if "options" in data:
            raise ValueError("options: unknown field (write each option in the stage)")
        data = dict(data)
        chosen = {k: data.pop(k) for k in OPTION_NAMES - {"op"} if k in data}
        if "op" in data:
            chosen["op"] = data["op"]
        weights = data.get("weights")
        if isinstance(weights, dict) and "file" in weights and "layout" in weights:
            given, own = chosen.get("layout"), weights["layout"]
            if given is not None and str(given).lower() != str(own).lower():
                raise ValueError(f"layout {given!r} and weights.layout {own!r} differ; the "
                                 "file's layout belongs to the file: give one")
            chosen["layout"] = own
        data["options"] = chosen
        return data

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, v: Any) -> BankOptions:
        return BankOptions(**v)

    @field_validator("bias", mode="before")
    @classmethod
    def _bias(cls, v: Any) -> Any:
        if isinstance(v, dict):  # {file, key}: a 1-D array in a weights file
            unknown = sorted(set(v) - {"file", "key"})
            if unknown or "file" not in v:
                raise ValueError(f"bias.{unknown[0]}: unknown field (expected file, key)"
                                 if unknown else "bias: a mapping here needs file (and key)")
            return FileWeights.model_validate(v)
        parse_bias(v)
        return v

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, v: Any, info: Any) -> Any:
        """Checked (sizes, numbers, limits) before anything is built; typed on the way out."""
        limits: Limits = (info.context or {}).get("limits", Limits())
        if isinstance(v, dict):
            return _kernel_source(v, "weights")
        if not isinstance(v, list) or not v:
            raise ValueError("expected {builtin: …}, {file: …}, a 2-D kernel [[…], …], "
                             "a list of kernels, or 4-D nested lists")
        depth = nesting_depth(v)
        if depth in (2, 4) and not any(isinstance(k, dict) for k in v):
            _numbers(v, depth, limits, "weights")
            return v
        if len(v) > limits.outputs:
            raise ValueError(f"{len(v)} kernels exceed the limit {limits.outputs} "
                             "(raise with --max-outputs)")
        kernels = []
        for i, k in enumerate(v):
            if isinstance(k, dict):
                kernels.append(_kernel_source(k, f"weights[{i}]", files=False))
            elif nesting_depth(k) == 2:
                _numbers(k, 2, limits, f"weights[{i}]")
                kernels.append(k)
            else:
                raise ValueError(f"weights[{i}]: expected a 2-D kernel or {{builtin: …}}")
        return kernels


class ModelStage(_Stage):
    """A trained model's layers from its own file (.keras, .h5, .onnx): each conv a bank
    with the file's kernel, bias, padding, strides, dilation, groups and activation
    (``pipeline.model``). ``layers`` picks some, in the model's order; ``method`` and
    ``dtype`` are every bank's."""

    type: Literal["model"]
    file: str
    layers: list[str] | None = Field(None, min_length=1, max_length=256)
    method: str = "auto"
    dtype: str = "float32"
    _read: Any = PrivateAttr(default=None)  # (ModelFile, pieces), once read

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return parse_method(v)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        return parse_dtype(v)

    def read(self, config: Config) -> tuple[Any, list[Any]]:
        """``(ModelFile, pieces)`` of the file, read once (``pipeline.model``: no OpenCV
        or FFTW there); raises ConfigError naming the file."""
        if self._read is None:
            from .model import pieces_of, read_model

            model = read_model(config.relative(self.file), config.limits.weight_values)
            self._read = (model, pieces_of(model, self.layers))
        return self._read


class ReduceStage(_Stage):
    """Combine all channels into one: sum, mean, max, or l2 (sqrt of the sum of squares)."""

    type: Literal["reduce"]
    op: Literal["sum", "mean", "max", "l2"]


class ConvertStage(_Stage):
    """Colour conversion then ``y = x·scale + offset`` (floats; gray from BGR by cv2 weights)."""

    type: Literal["convert"]
    color: Literal["none", "gray", "bgr2rgb", "rgb2bgr"] = "none"
    scale: float = Field(1.0, allow_inf_nan=False)
    offset: float = Field(0.0, allow_inf_nan=False)


class ResizeStage(_Stage):
    """Resize (cv2.INTER_AREA): either ``scale`` or ``width`` and ``height``."""

    type: Literal["resize"]
    scale: float | None = Field(None, gt=0, le=16, allow_inf_nan=False)
    width: int | None = Field(None, ge=1, le=16384)
    height: int | None = Field(None, ge=1, le=16384)

    @model_validator(mode="after")
    def _one_way(self) -> ResizeStage:
        if (self.scale is None) == (self.width is None or self.height is None):
            raise ValueError("resize takes either scale, or both width and height")
        return self


class SelectStage(_Stage):
    """Keep the listed channels, in that order."""

    type: Literal["select"]
    channels: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=64)


Stage = Annotated[BankStage | ModelStage | ReduceStage | ConvertStage | ResizeStage |
                  SelectStage,
                  Field(discriminator="type")]


class Encode(BaseModel):
    """Float results -> 8-bit video/images. ``range`` [lo, hi] maps linearly onto 0..255.

    saturate: round and clip (OpenCV's saturate_cast); abs: |x| first; normalize: like
    saturate but the range must be given — ``per-frame`` uses each frame's own min/max
    (flickers; only when asked). ``select`` picks 1 or 3 channels; ``mosaic`` tiles them.
    """

    model_config = ConfigDict(extra="forbid")
    policy: Literal["saturate", "abs", "normalize"] = "saturate"
    range: list[float] | Literal["per-frame"] | None = None
    select: list[Annotated[int, Field(ge=0)]] | None = None
    mosaic: bool = False
    columns: int | None = Field(None, ge=1, le=64)

    @model_validator(mode="after")
    def _check(self) -> Encode:
        if self.range is None:
            if self.policy == "normalize":
                raise ValueError("policy 'normalize' needs range: [lo, hi] (or 'per-frame')")
        elif self.range == "per-frame":
            if self.policy != "normalize":
                raise ValueError("range 'per-frame' only goes with policy 'normalize'")
        elif len(self.range) != 2 or not self.range[0] < self.range[1] or \
                any(v != v or abs(v) == float("inf") for v in self.range):
            raise ValueError("range must be [lo, hi] with finite lo < hi")
        if self.select is not None and len(self.select) not in (1, 3):
            raise ValueError("select takes 1 channel (gray) or 3 (B, G, R)")
        if self.select is not None and self.mosaic:
            raise ValueError("choose select or mosaic, not both")
        return self

    @property
    def bounds(self) -> tuple[float, float] | None:
        """(lo, hi) of a fixed range, or None for per-frame."""
        if self.range == "per-frame":
            return None
        lo, hi = self.range or (0.0, 255.0)
        return float(lo), float(hi)


class Config(BaseModel):
    """A whole job: where frames come from, what the chain does, where results go."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    source: str | int = "synthetic"
    output: str | InstanceOf[OutputTarget] | None = None  # a path, or {path, codec, ...}
    stages: list[Stage] = Field(min_length=1, max_length=64)
    encode: Encode = Field(default_factory=Encode)
    path: Path | None = Field(None, exclude=True)  # the YAML file, for relative weight paths
    limits: Limits = Field(default_factory=Limits, exclude=True)

    @field_validator("output", mode="before")
    @classmethod
    def _output(cls, v: Any) -> Any:
        return OutputTarget.parse(v) if isinstance(v, dict) else v

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("source must be a camera index, path, URL or 'synthetic'")
        return v

    def files_read(self) -> list[Path]:
        """Every file the stages read (weights, biases, models), in order."""
        files: list[Path] = []
        for stage in self.stages:
            if isinstance(stage, BankStage):
                files += [self.relative(w.file) for w in (stage.weights, stage.bias)
                          if isinstance(w, FileWeights)]
            elif isinstance(stage, ModelStage):
                files.append(self.relative(stage.file))
        return files

    def relative(self, name: str) -> Path:
        """A path from the config: relative to the config file's folder."""
        p = Path(name).expanduser()
        return p if p.is_absolute() or self.path is None else self.path.parent / p


# ------------------------------------------------------------------ errors
def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAGS:
            continue  # pydantic's union branch names, not fields
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_TAGS = {"bank", "model", "reduce", "convert", "resize", "select", "function-after"}
_FIELDS = {
    "bank": set(BankStage.model_fields) - {"options"} | OPTION_NAMES,
    "model": set(ModelStage.model_fields),
    "reduce": set(ReduceStage.model_fields), "convert": set(ConvertStage.model_fields),
    "resize": set(ResizeStage.model_fields),
    "select": set(SelectStage.model_fields), "encode": set(Encode.model_fields),
    "": set(Config.model_fields) - {"path", "limits"},
}


def _option_error(error: dict[str, Any]) -> OptionError | None:
    """The OptionError behind a pydantic error, when BankOptions raised it."""
    cause = (error.get("ctx") or {}).get("error")
    return cause if isinstance(cause, OptionError) else None


def _message(error: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    cause = _option_error(error)
    given = cause.value if cause is not None else error.get("input")
    if isinstance(given, bool):
        hint = " (YAML reads yes/no/on/off as booleans: quote the word)"
    else:
        hint = ""
    return _plain(error, loc, kind) + hint


def _plain(error: dict[str, Any], loc: tuple[Any, ...], kind: str) -> str:
    if kind == "extra_forbidden":
        owner = next((p for p in reversed(loc[:-1]) if isinstance(p, str) and p in _FIELDS), "")
        close = difflib.get_close_matches(str(loc[-1]), sorted(_FIELDS[owner]), n=1)
        return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "union_tag_invalid":
        return "type must be one of bank, model, reduce, convert, resize, select"
    if kind == "union_tag_not_found":
        return "missing 'type' (bank, model, reduce, convert, resize, select)"
    message = str(error.get("msg", ""))
    return message.removeprefix("Value error, ")


def load_config(path: str | os.PathLike[str], limits: Limits | None = None) -> Config:
    """The validated config at ``path``; raises ConfigError ``file:line:col: field: problem``."""
    limits = limits or Limits()
    data, node = read_yaml(path, limits)
    try:
        config = Config.model_validate(data, context={"limits": limits})
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        cause = _option_error(first)
        if loc and loc[-1] == "options":  # the option's own field, where the user wrote it
            loc = loc[:-1] + ((cause.option,) if cause is not None and cause.option else ())
        elif loc == ("output",) and cause is not None and cause.option:
            loc = loc + (cause.option,)
        where = mark(node_at(node, loc), os.fspath(path))
        field = _path(loc)
        message = _message(first, loc).removeprefix(f"{field}: ")  # said once
        raise ConfigError(f"{where}: {field}: {message}") from None
    config.path = Path(os.fspath(path))
    config.limits = limits
    for i, stage in enumerate(config.stages):  # read before any source opens
        if isinstance(stage, ModelStage):
            try:
                stage.read(config)
            except ConfigError as e:
                field = "layers" if stage.layers and "layer" in str(e) else "file"
                where = mark(node_at(node, ("stages", i, field)), os.fspath(path))
                raise ConfigError(f"{where}: stages[{i}].{field}: {e}") from None
    return config
