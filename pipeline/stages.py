"""The processing chain: config stages made into callables once the frame format is known.

A stage's shape depends on what reaches it (a dense bank's weights need C_in), so the
chain is built when the source has announced its format, and every bank is planned then
(FFTW plans, kernel spectra) so the first frame already runs at full speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .bank import FilterBank, Plan
from .config import (
    BankStage,
    BuiltinKernel,
    Config,
    ConvertStage,
    FileWeights,
    ModelStage,
    ReduceStage,
    ResizeStage,
    SelectStage,
    Stage,
    nesting_depth,
)
from .encode import Encoder
from .engine.epilogue import Finish
from .errors import ConfigError, FrameError
from .options import BankOptions
from .frames import FrameFormat
from .kernels import make_kernel
from .weightfiles import load_weights

Shape = tuple[int, int, int]

# convert {color: gray} as a mix of a BGR pixel: OpenCV's float coefficients (B2YF, G2YF,
# R2YF), summed in cv2.cvtColor's order (_depthwise.c: MIX_ORDER3)
GRAY_MIX = np.array([[0.114, 0.587, 0.299]], np.float32)


@dataclass
class Step:
    """One stage: ``fn`` maps a float ``(H, W, C)`` frame of ``in_shape`` to ``out_shape``."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    in_shape: Shape
    out_shape: Shape
    bank: FilterBank | None = None
    plan: Plan | None = None
    pixelwise: bool = False  # each output pixel from the same pixel's values only
    in_dtype: str = "float32"  # what reaches it: the source's frames reach a first bank
    reduce: str | None = None  # a reduce stage's op
    # a bank right after a first convert {color: gray}: the mix its loads may fold in
    mix: np.ndarray | None = None
    about: list[str] = field(default_factory=list)  # for `pipeline plan`: a model's layers


@dataclass
class Chain:
    """All steps of a config for one frame format; ``chain(frame)`` -> float32 (H', W', C')."""

    steps: list[Step] = field(default_factory=list)
    in_format: FrameFormat | None = None
    finished_in: int | None = None  # the bank step that writes the 8-bit frames, if one does
    folded: bool = False  # the first step (convert: gray) is done by the bank's loads
    _seconds: list[float | None] = field(default_factory=list, repr=False)

    @property
    def out_shape(self) -> Shape:
        return self.steps[-1].out_shape

    def plan(self) -> None:
        """Plan every bank for its input format (FFTW plans, kernel spectra, method
        timings) so the first frame already runs at full speed; raises ConfigError."""
        for step in self.steps:
            if step.bank is not None and step.plan is None:
                try:
                    step.plan = step.bank.plan(step.in_shape, step.in_dtype)
                    if step.mix is not None:
                        self._fold(step)
                except (ConfigError, FrameError) as e:
                    raise type(e)(f"{step.name}: {e}") from None

    def _fold(self, step: Step) -> None:
        """The convert before ``step`` folded into its bank's loads where its method can
        (the depthwise and separable C kernels): each source pixel read once, no gray
        frame made. Else the bank is planned for the convert's float frames instead."""
        assert step.bank is not None and step.mix is not None
        mixed = step.bank.load_mix(step.in_shape, step.mix, step.in_dtype)
        if mixed is not None:
            step.fn = mixed
            step.plan = step.bank.plan(step.in_shape, step.in_dtype)  # it says so now
            self.folded = True
            return
        step.mix, step.in_dtype = None, "float32"
        step.plan = step.bank.plan(step.in_shape, step.in_dtype)

    def finish_in_bank(self, encoder: Encoder) -> bool:
        """Encode to 8 bits inside the last bank, band by band while each is in cache, with
        the pixelwise stages after it (reduce, select, convert) run on the same bands:
        where the encoder is per pixel and the bank's method has bands. Then ``chain(frame)``
        returns the 8-bit frame itself, the same numbers as encoding its float result."""
        banks = [i for i, step in enumerate(self.steps) if step.bank is not None]
        if not banks or not encoder.per_pixel or self.finished_in is not None:
            return False
        last = banks[-1]
        after = self.steps[last + 1 :]
        if not all(step.pixelwise for step in after):
            return False

        def apply(band: np.ndarray, out: np.ndarray) -> None:
            for step in after:
                band = step.fn(band)
            encoder.band(band, out)

        # the C stores may do all of it: the policy alone, or after the l2 of a pair
        pair_l2 = len(after) == 1 and after[0].reduce == "l2" and after[0].in_shape[2] == 2
        alone = encoder.in_stores if not after or pair_l2 else None
        finish = Finish(apply, encoder.shape[2], alone, encoder.count_nans,
                        "l2" if pair_l2 and alone is not None else None)
        step = self.steps[last]
        assert step.bank is not None
        if not step.bank.finish_bands(step.in_shape, finish, step.in_dtype):
            return False
        self.finished_in = last
        return True

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x = frame if frame.ndim == 3 else frame[:, :, None]
        end = len(self.steps) if self.finished_in is None else self.finished_in + 1
        seconds = self._seconds
        if len(seconds) != len(self.steps):
            seconds[:] = [None] * len(self.steps)
        for i in range(int(self.folded), end):
            start = time.perf_counter()
            x = self.steps[i].fn(x)
            spent = time.perf_counter() - start
            seconds[i] = spent if seconds[i] is None else 0.8 * seconds[i] + 0.2 * spent
        return x

    def step_ms(self) -> list[float | None]:
        """Each step's ms a frame, smoothed (0.2 weight on the newest); None for a step
        done inside another (a folded convert, the stages a last bank finishes)."""
        if len(self._seconds) != len(self.steps):  # not run yet
            return [None] * len(self.steps)
        return [None if s is None else s * 1e3 for s in self._seconds]


def _where(stage: Stage, index: int) -> str:
    return f"stages[{index}]" + (f" ({stage.name})" if stage.name else "")


def _kernel(source: BuiltinKernel | list, where: str) -> np.ndarray:
    if isinstance(source, BuiltinKernel):
        try:
            return make_kernel(source.builtin, **source.params)
        except TypeError as e:  # a parameter of the wrong type reached the factory
            raise ConfigError(f"{where}: builtin {source.builtin}: {e}") from None
    return np.asarray(source, dtype=np.float64)


def bank_weights(stage: BankStage, config: Config, c_in: int, where: str) -> np.ndarray:
    """The stage's weights as FilterBank takes them, for a ``c_in``-channel input.

    A list of 2-D kernels has one kernel per output channel: dense applies each to every
    input channel and sums (C_out, C_in, kh, kw); depthwise gives each input channel
    every kernel (C_in·M, 1, kh, kw), output k·M + q reading channel k.
    """
    w = stage.weights
    if isinstance(w, FileWeights):
        try:
            return load_weights(config.relative(w.file), w.key,
                                max_elements=config.limits.weight_values)
        except ConfigError as e:  # the file says what; the stage says where
            raise ConfigError(f"{where}.weights: {e}") from None
    if isinstance(w, BuiltinKernel):
        return _kernel(w, f"{where}.weights")
    if nesting_depth(w) in (2, 4):  # one inline 2-D kernel, or inline 4-D weights in `layout`
        return np.asarray(w, dtype=np.float64)
    kernels = [_kernel(k, f"{where}.weights[{i}]") for i, k in enumerate(w)]
    shapes = {k.shape for k in kernels}
    if len(shapes) > 1:
        raise ConfigError(f"{where}.weights: kernels differ in size {sorted(shapes)}; "
                          "a bank needs one size (pad the smaller ones with zeros)")
    stack = np.stack(kernels)  # (M, kh, kw)
    if stage.options.mode == "depthwise":
        return np.tile(stack[None], (c_in, 1, 1, 1)).reshape(-1, 1, *stack.shape[1:])
    return np.repeat(stack[:, None], c_in, axis=1)


def _bias(stage: BankStage, config: Config, where: str) -> Any:
    """The stage's bias: its list, or the array in ``{file, key}``."""
    if not isinstance(stage.bias, FileWeights):
        return stage.bias
    b = stage.bias
    try:
        bias = load_weights(config.relative(b.file), b.key, max_elements=config.limits.outputs)
    except ConfigError as e:
        raise ConfigError(f"{where}.bias: {e}") from None
    if bias.ndim != 1:
        raise ConfigError(f"{where}.bias: {b.file}: a bias is 1-D (one value per output "
                          f"channel), got shape {bias.shape}")
    return bias


def _check_limits(weights: np.ndarray, o: BankOptions, config: Config, where: str) -> None:
    """Built-ins, weight files and models meet the same limits as inline kernels."""
    limits = config.limits
    kh, kw = weights.shape[-2:] if o.layout == "oihw" or weights.ndim == 2 \
        else weights.shape[:2]
    if max(kh, kw) > limits.kernel:
        raise ConfigError(f"{where}.weights: {kh}x{kw} kernel exceeds the limit "
                          f"{limits.kernel}x{limits.kernel} (raise with --max-kernel)")
    if weights.ndim == 4:
        c_out = weights.shape[0] if o.layout == "oihw" else weights.shape[3] * (
            weights.shape[2] if o.mode == "depthwise" else 1)
        if c_out > limits.outputs:
            raise ConfigError(f"{where}.weights: {c_out} output channels exceed the limit "
                              f"{limits.outputs} (raise with --max-outputs)")


def _bank_step(stage: BankStage, config: Config, shape: Shape, where: str) -> Step:
    weights = bank_weights(stage, config, shape[2], where)
    _check_limits(weights, stage.options, config, where)
    try:
        bank = FilterBank(weights, _bias(stage, config, where), options=stage.options)
        out = bank.output_shape(shape)
    except (ConfigError, FrameError) as e:
        raise type(e)(f"{where}: {e}") from None
    return Step(where, bank, shape, out, bank=bank)


def _model_steps(stage: ModelStage, config: Config, shape: Shape, where: str) -> list[Step]:
    """One step per piece of the model (``pipeline.model``): banks with what folded into
    them, then per-channel steps; checked against the channels that reach each."""
    from .model import activation_step, bank_options, scale_step

    model, pieces = stage.read(config)
    if stage.layers is None and model.in_channels not in (None, shape[2]):
        raise ConfigError(f"{where}: {stage.file} takes {model.in_channels}-channel input "
                          f"({model.kind}); {shape[2]}-channel frames reach it")
    steps = []
    for piece in pieces:
        name = f"{where} {piece.name}"
        about = [f"{layer}, {layer.params} parameters" + (
                 f": {piece.notes[layer.name]}" if layer.name in piece.notes else "")
                 for layer in piece.layers]
        if piece.kind == "bank":
            try:
                options = BankOptions(**bank_options(piece), method=stage.method,
                                      dtype=stage.dtype)
                _check_limits(piece.weights, options, config, name)
                bank = FilterBank(piece.weights, piece.bias, options=options)
                out = bank.output_shape(shape)
            except (ConfigError, FrameError) as e:
                raise type(e)(f"{name}: {e}") from None
            step = Step(name, bank, shape, out, bank=bank, about=about)
        else:
            if piece.kind == "scale":
                assert piece.scale is not None and piece.shift is not None
                size = max(piece.scale.size, piece.shift.size)
                if size not in (1, shape[2]):
                    raise ConfigError(f"{name}: {size} channels of scale and shift; "
                                      f"{shape[2]}-channel frames reach it")
            fn = scale_step(piece) if piece.kind == "scale" else activation_step(piece)
            step = Step(name, fn, shape, shape, pixelwise=True, about=about)
        steps.append(step)
        shape = step.out_shape
    return steps


def _reduce(op: str) -> Callable[[np.ndarray], np.ndarray]:
    if op == "sum":
        return lambda x: np.sum(x, axis=2, keepdims=True, dtype=np.float32)
    if op == "mean":
        return lambda x: np.mean(x, axis=2, keepdims=True, dtype=np.float32)
    if op == "max":
        return lambda x: np.max(x, axis=2, keepdims=True)

    def l2(x: np.ndarray) -> np.ndarray:
        if x.shape[2] == 2:  # the common gradient pair: a*a + b*b, each step rounded, then
            # sqrt: what the C stores compute when they finish it (not cv2.magnitude, whose
            # last bit depended on the arrays' alignment, up to 2 ulp off the exact value)
            out = np.square(x[..., 0], dtype=np.float32)
            out += np.square(x[..., 1], dtype=np.float32)
            return np.sqrt(out, out=out)[..., None]
        return np.sqrt(np.einsum("hwc,hwc->hw", x, x))[..., None]

    return l2


def _convert(stage: ConvertStage, shape: Shape, where: str) -> tuple[Callable, Shape]:
    h, w, c = shape
    if stage.color != "none" and c != 3:
        raise ConfigError(f"{where}: color {stage.color} needs 3 channels, got {c}")
    out_c = 1 if stage.color == "gray" else c

    def fn(x: np.ndarray) -> np.ndarray:
        if stage.color == "gray":
            x = cv2.cvtColor(np.ascontiguousarray(x, dtype=np.float32), cv2.COLOR_BGR2GRAY)
            x = x[..., None]
        elif stage.color in ("bgr2rgb", "rgb2bgr"):
            x = x[..., ::-1]
        if stage.scale != 1.0 or stage.offset != 0.0:
            x = x * np.float32(stage.scale) + np.float32(stage.offset)
        return x

    return fn, (h, w, out_c)


def _resize(stage: ResizeStage, shape: Shape) -> tuple[Callable, Shape]:
    h, w, c = shape
    if stage.scale is not None:
        size = (max(1, round(w * stage.scale)), max(1, round(h * stage.scale)))
    else:
        size = (stage.width, stage.height)

    def fn(x: np.ndarray) -> np.ndarray:
        y = cv2.resize(np.ascontiguousarray(x), size, interpolation=cv2.INTER_AREA)
        return y.reshape(size[1], size[0], c)

    return fn, (size[1], size[0], c)


def build_chain(config: Config, fmt: FrameFormat, plan: bool = True) -> Chain:
    """Every stage made for frames of ``fmt``; banks planned unless ``plan`` is False
    (shapes only: what `pipeline validate` needs). Raises ConfigError / FrameError."""
    chain = Chain(in_format=fmt)
    shape: Shape = fmt.shape
    for i, stage in enumerate(config.stages):
        where = _where(stage, i)
        if isinstance(stage, ModelStage):
            chain.steps += _model_steps(stage, config, shape, where)
            shape = chain.steps[-1].out_shape
            continue
        if isinstance(stage, BankStage):
            step = _bank_step(stage, config, shape, where)
        elif isinstance(stage, ReduceStage):
            step = Step(where, _reduce(stage.op), shape, (shape[0], shape[1], 1),
                        pixelwise=True, reduce=stage.op)
        elif isinstance(stage, ConvertStage):
            fn, out = _convert(stage, shape, where)
            step = Step(where, fn, shape, out, pixelwise=True)
        elif isinstance(stage, ResizeStage):
            fn, out = _resize(stage, shape)
            step = Step(where, fn, shape, out)
        else:
            assert isinstance(stage, SelectStage)
            bad = [ch for ch in stage.channels if ch >= shape[2]]
            if bad:
                raise ConfigError(f"{where}: channel {bad[0]} does not exist "
                                  f"({shape[2]} channels reach this stage)")
            picks = list(stage.channels)
            step = Step(where, lambda x, p=picks: x[..., p], shape,
                        (shape[0], shape[1], len(picks)), pixelwise=True)
        chain.steps.append(step)
        shape = step.out_shape
    # frames enter as float32 once; a bank converts integer frames itself, faster
    if chain.steps[0].bank is None:
        first = chain.steps[0].fn
        chain.steps[0].fn = lambda x, f=first: f(np.asarray(x, dtype=np.float32))
    else:
        chain.steps[0].in_dtype = fmt.dtype
    if _foldable(config.stages, fmt):  # the bank may read the BGR frames as they come
        chain.steps[1].in_dtype, chain.steps[1].mix = fmt.dtype, GRAY_MIX
    if plan:
        chain.plan()
    return chain


def _foldable(stages: list[Stage], fmt: FrameFormat) -> bool:
    """Whether the chain starts with a plain convert {color: gray} of BGR frames and then
    a bank, whose loads can do the convert (``Chain._fold``)."""
    first = stages[0]
    return (len(stages) > 1 and isinstance(stages[1], BankStage) and fmt.channels == 3
            and isinstance(first, ConvertStage) and first.color == "gray"
            and first.scale == 1.0 and first.offset == 0.0)


def model_totals(cfg: Config) -> list[str]:
    """A line per model stage: its file, kind, layers used and their parameters."""
    lines = []
    for stage in cfg.stages:
        if isinstance(stage, ModelStage):
            model, pieces = stage.read(cfg)
            used = [layer for piece in pieces for layer in piece.layers]
            steps = f"{len(pieces)} step" + "s" * (len(pieces) != 1)
            lines.append(f"\nmodel {stage.file} ({model.kind}): {len(used)} layers in "
                         f"{steps}, {sum(p.params for p in pieces)} parameters "
                         "(as the framework counts them)")
    return lines
