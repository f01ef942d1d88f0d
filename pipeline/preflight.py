"""What is checked of a config before any frame: by ``run`` (runner.py), and by ``plan``
and ``validate`` without running it.

``checked_chain`` is the one list of those checks (the frame size, every stage built for
the frames, the memory the stream will hold, the 8-bit encoding its outputs need), so
``validate`` never says ok to what ``run`` refuses at once. ``frames_to_check`` says which
frames: ``--size``, or the source's own (a file's header, an image, the pattern).
"""

from __future__ import annotations

from typing import Any

from .encode import Encoder
from .errors import ConfigError, InputError
from .frames import FrameFormat
from .io.base import FrameSink
from .stages import Chain, build_chain
from .stream import memory_estimate
from .yamlfile import Limits


def checked_chain(config: Any, fmt: FrameFormat, name: str, live: bool, limits: Limits,
                  max_memory: int, sinks: list[FrameSink]) -> tuple[Chain, Encoder | None]:
    """What a run checks of ``config`` for frames of ``fmt`` (from the source ``name``)
    before it plans anything: the frame size, every stage built for it, the memory the
    stream will hold, and the 8-bit encoding its ``sinks`` need (the channels a video
    takes). Returns the unplanned chain and the encoder (or None). Raises ConfigError /
    InputError."""
    if fmt.height * fmt.width > limits.pixels:
        raise InputError(f"{name}: frame {fmt.width}x{fmt.height} exceeds the limit of "
                         f"{limits.pixels / 1e6:.1f} MP (raise with --max-pixels)")
    chain = build_chain(config, fmt, plan=False)
    need = memory_estimate(fmt, [step.out_shape for step in chain.steps], live)
    if need > max_memory:
        raise InputError(f"{name}: {fmt.width}x{fmt.height} frames through this chain need "
                         f"about {need / 2**30:.1f} GiB; --max-memory "
                         f"{max_memory / 2**30:.1f} GiB")
    needs_encoder = any(s.wants == "uint8" for s in sinks)
    return chain, Encoder(config.encode, chain.out_shape) if needs_encoder else None


def parse_size(size: str) -> FrameFormat:
    """``--size WIDTHxHEIGHT[xCHANNELS]`` (uint8 frames); ConfigError otherwise."""
    parts = size.lower().split("x")
    try:
        w, h, *c = (int(p) for p in parts)
    except ValueError:
        w = h = 0
    if len(parts) not in (2, 3) or min(w, h, *c) < 1:
        raise ConfigError(f"--size {size!r}: expected WIDTHxHEIGHT[xCHANNELS], each at "
                          "least 1")
    return FrameFormat(h, w, c[0] if c else 3)


def frames_to_check(config: Any, source: str | None, size: str | None, max_pixels: int,
                    open_live: bool) -> tuple[FrameFormat, str, str]:
    """(the frames to check against, their source's name, a note): ``size``, else the
    source's own, opened (a frame past ``max_pixels`` refused from its header, as run
    does); a camera or URL only with ``open_live``, else 640x480x3 and a note saying so."""
    from .io.choose import open_source

    spec = config.source if source is None else source
    if size:
        return parse_size(size), str(spec), ""
    src = open_source(spec)
    if src.live and not open_live:
        return FrameFormat(480, 640, 3), src.name, f"; {src.name} not opened: give --size"
    with src:
        return src.open(max_pixels=max_pixels), src.name, ""
