"""The one place that wires a run: open the source, build the chain, open the sinks,
stream (stream.py), then finalise the sinks, or keep or remove what they wrote.

From the moment outputs are opened until they are finalised, SIGINT/SIGTERM/SIGHUP
only ask the run to stop (signals.py): it finalises with the frames written so far.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext

from .dashboard import Dashboard
from .encode import Encoder
from .errors import ConfigError, Interrupted, OutputError, PipelineError
from .io.base import FrameSink, FrameSource
from .io.codecs import OutputTarget, VideoSettings
from .signals import exit_code, interruptibly, signal_name, stop_on_signals
from .preflight import checked_chain
from .stats import Stats
from .stream import Run, stuck_threads

__all__ = ["Stats", "run_config", "stuck_threads"]


def finish(sinks: list[FrameSink], stats: Stats, failed: bool) -> None:
    """Close every sink (finalise) or, after a failure, abort them; collect their results."""
    for sink in sinks:
        try:
            if failed:
                sink.abort()
            else:
                result = sink.close()
                stats.results.append(result)
                stats.warnings.extend(result.warnings)
        except PipelineError:
            for other in sinks:
                other.abort()
            raise


def keep_partial(sinks: list[FrameSink]) -> list[str]:
    """Finalise each sink but leave files at their temporary names; those names."""
    return [str(path) for path in (sink.keep() for sink in sinks) if path]


def output_target(config, output, video: VideoSettings | None
                  ) -> tuple[object, VideoSettings | None]:
    """(what is written, its codec settings): ``-o`` replaces the config's output, codec
    settings and all; the command line's codec flags (``video``) apply to whichever path
    is used, over a mapping ``output:``'s own."""
    if output is not None:
        return output, video
    if isinstance(config.output, OutputTarget):
        return config.output.path, (video or VideoSettings()).over(config.output.settings)
    return config.output, video


def _views(show: bool, serve: str | None, serve_token: str | None,
           announce: Callable[[str], None] | None, board: Dashboard | None) -> list[FrameSink]:
    """The window (``--show``) and the page (``--serve``) a run shows itself in."""
    if not (show or serve):
        return []
    from .io.viewers import MjpegServerSink, WindowSink  # http.server alone: 35 ms a start

    views: list[FrameSink] = [WindowSink()] if show else []
    if serve:
        views.append(MjpegServerSink(serve, announce=announce, dashboard=board,
                                     token=serve_token))
    return views


def _sinks_named(config, output, views: list[FrameSink], force: bool, inputs: list[str],
                 token: str | None, video: VideoSettings | None) -> list[FrameSink]:
    """The sinks a run writes to (``output_target``), then ``views``. With views and no
    ``-o`` only the views run: the config's output is not written (README "Using it")."""
    from .io.sinks import open_sink

    target, settings = (None, video) if output is None and views else \
        output_target(config, output, video)
    sinks: list[FrameSink] = []
    if target is not None or not views:
        sinks.append(open_sink(target, force=force, inputs=inputs, token=token,
                               settings=settings)
                     if target is None or isinstance(target, str) else target)
    return sinks + views


def _hearing(board: Dashboard | None, tell: Callable[[str, str], None] | None
             ) -> Callable[[str, str], None]:
    """One callback for a reload's outcome: the page's notes and the caller's."""
    def hear(kind: str, text: str) -> None:
        if board is not None:
            board.note(kind, text)
        if tell is not None:
            tell(kind, text)
    return hear


def _open_sinks(sinks: list[FrameSink], shape: tuple[int, int, int],
                encoder: Encoder | None, fps: float, origin: str | None) -> None:
    """Each sink sized from the chain's output (float) or the encoder's (8-bit); any
    failure aborts the ones already opened."""
    opened: list[FrameSink] = []
    try:
        for sink in sinks:
            if sink.wants == "float":
                sink.open(shape, fps, origin)
            else:
                assert encoder is not None
                sink.open(encoder.shape, fps, origin)
            opened.append(sink)
    except BaseException:
        for sink in opened:
            sink.abort()
        raise


def run_config(config, *, source=None, output: str | None = None,
               max_frames: int | None = None, show: bool = False, serve: str | None = None,
               force: bool = False, sinks: list[FrameSink] | None = None,
               progress: Callable[[Stats], None] | None = None,
               stop: threading.Event | None = None, limits=None, live: dict | None = None,
               max_memory: int = 4 << 30, on_stop: str = "finalise",
               token: str | None = None, video: VideoSettings | None = None,
               announce: Callable[[str], None] | None = None,
               realtime: bool | None = None, loop: bool = False, watch: bool = False,
               tell: Callable[[str, str], None] | None = None,
               serve_token: str | None = None) -> Stats:
    """Run ``config`` (a Config or a YAML path) and return its Stats.

    ``source``/``output`` override the config's (a spec string, or a FrameSource/FrameSink
    object); ``sinks`` are used instead of any output. From the moment outputs are opened
    until they are finalised, SIGINT/SIGTERM/SIGHUP stop the run cleanly (main thread
    only): ``Stats.interrupted`` names the signal. A run stopped that way (or by ``stop``)
    finalises its outputs with the frames so far, or with ``on_stop="keep"`` (batch: only
    whole outputs get their final names) leaves them at their temporary names, listed in
    ``Stats.kept``. A source that fails midway leaves the frames written so far at the
    output's temporary name, named in the error; an output that fails leaves nothing.
    ``token`` names the temporary files (destination.py); ``video`` the command line's codec
    settings (codecs.py), checked before anything is opened. ``announce`` is told where
    a ``serve`` view is reachable once it listens ("serving at http://…/"), with
    ``serve_token`` as its token (webserver.py; one is made for a non-loopback address,
    and printed in that URL). ``realtime``
    plays a file at its own frame rate (its frames' times); None: when every sink is a
    view (``--show``, ``--serve``), as a player would. ``loop`` replays a file or images
    from the first frame at their end until stopped (views only). ``watch`` reloads the
    config's file when it changes (watch.py); ``tell(kind, text)`` hears each reload,
    rejected config and note, as the ``serve`` page does. Raises PipelineError subclasses.
    """
    from .config import Config, Limits, load_config
    from .io.choose import open_source

    limits = limits or Limits()
    if not isinstance(config, Config):
        config = load_config(config, limits)
    spec = config.source if source is None else source
    src: FrameSource = open_source(spec, live) if isinstance(spec, str | int) else spec
    if watch and config.path is None:
        raise ConfigError("--watch: the config has no file to watch")
    if watch:
        from .watch import Watcher, digest

        since = digest(config, limits)  # before the first chain is planned: no edit is missed
    board = Dashboard(src.name, str(config.path) if config.path else None) if serve else None
    if sinks is None:
        sinks = _sinks_named(config, output, _views(show, serve, serve_token, announce, board),
                             force, [src.path] if src.path else [], token, video)
    if loop and (src.live or not all(s.view for s in sinks)):
        raise ConfigError(f"--loop: {src.name} is live" if src.live else
                          "--loop replays into views only (--show/--serve without -o): "
                          "a file output would never end")
    stop = stop or threading.Event()
    src.stop = stop  # reconnect back-offs end at a signal too
    received: list[int] = []
    with stop_on_signals(stop, received), src:
        try:
            fmt = interruptibly(lambda: src.open(max_pixels=limits.pixels), stop, "open",
                                "opening the source")
            chain, encoder = checked_chain(config, fmt, src.name, src.live, limits,
                                           max_memory, sinks)
            # FFT plans and spectra, method timings: before the first frame (minutes for a
            # cold FFTW cache at 4K), on a thread a signal does not wait for
            interruptibly(chain.plan, stop, "plan", "planning the chain")
        except Interrupted as e:
            e.exit_code = exit_code(signal_name(received[0]) if received else None)
            raise
        _open_sinks(sinks, chain.out_shape, encoder, fmt.fps, src.path)
        paced = all(s.view for s in sinks) if realtime is None else realtime
        run = Run(src, fmt, chain, encoder, sinks, max_frames, progress, stop, paced, loop,
                  board)
        hear = _hearing(board, tell)
        if board is not None:
            board.attach(run)
        try:
            with (Watcher(config.path, config, limits, fmt, run, sinks, max_memory, hear,
                          since) if watch else nullcontext()):
                stats = run.run()
        except OutputError:
            finish(sinks, run.stats, failed=True)
            raise
        except PipelineError as e:  # the source failed: keep what was written, and say where
            kept = keep_partial(sinks)
            if kept and run.stats.frames_written:
                dropped = run.stats.dropped  # a live source's: newer frames replaced them
                raise type(e)(f"{e}; {run.stats.frames_written} frames kept in "
                              f"{', '.join(kept)}" + (f" ({dropped} dropped, live: newest "
                                                      "frame kept)" if dropped else "")
                              ) from None
            raise
        except BaseException:
            finish(sinks, run.stats, failed=True)
            raise
        if run.stopped and on_stop == "keep":
            stats.kept = keep_partial(sinks)
        else:
            finish(sinks, stats, failed=False)
        stats.decode_errors = src.decode_errors
        stats.reconnects = src.reconnects
    stats.warnings = list(src.warnings) + stats.warnings  # closed: all of them
    stats.ended_early = src.ended_early
    if received:
        stats.interrupted = signal_name(received[0])
    elif run.stopped:
        stats.interrupted = "a request to stop"
    return stats
