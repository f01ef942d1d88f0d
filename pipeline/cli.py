"""The typer CLI (SPEC section 4): a thin adapter over load_config / run_config.

Every PipelineError becomes one line on stderr and its exit code (2 config, 3 input,
4 output, 5 live source lost); a signal ends a run with 130/143/129 once the outputs
are finalised. Tracebacks only with --debug.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .config import Limits, load_config
from .errors import INTERNAL, LOSSY, ConfigError, PipelineError
from .progress import files_bar, frames_bar, watch_lines
from .signals import SIGNAL_CODES, exit_code

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Streaming image-filter pipeline: exact convolution/correlation banks "
                       "on video, chosen fastest method per bank.")
err = Console(stderr=True, highlight=False)  # progress bars and notes, never error lines
out = Console(highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """One line on stderr, never wrapped (rich would wrap it at the terminal width)."""
    try:
        print(f"error: {message}", file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


def say(text: str) -> None:
    """stdout; a reader that went away (``| head -1``) is not an error of ours."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError at exit


def leave(code: int, interrupted: bool = False) -> None:
    """Exit with ``code``. With os._exit (outputs are final, streams flushed) when a
    capture thread is stuck inside OpenCV (finalising around it crashed with rc 139,
    RELIABILITY b5), and after a signal: a second Ctrl-C during interpreter shutdown meets
    the restored default action and kills the process, so the exit code would be lost."""
    streaming = sys.modules.get("pipeline.stream")  # never imported: no run, no stuck thread
    if interrupted or (streaming is not None and streaming.stuck_threads()):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, OSError):
                pass
        os._exit(code)
    raise typer.Exit(code)

Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
Strict = Annotated[bool, typer.Option("--strict", help=(
    "Exit 6 when a job finished but lost frames on the way in: undecodable frames "
    "skipped, or a file that ended before its declared frame count (default: exit 0 and "
    "a warning)."))]
MaxKernel = Annotated[int, typer.Option("--max-kernel", help="Largest kernel side in a config.")]
MaxOutputs = Annotated[int, typer.Option("--max-outputs", help="Most output channels of a bank.")]
MaxPixels = Annotated[float, typer.Option("--max-pixels", help="Largest frame, megapixels.")]
MaxMemory = Annotated[float, typer.Option("--max-memory", help="GiB a run may hold.")]
Codec = Annotated[str | None, typer.Option("--codec", help=(
    "Video codec: h264 hevc vp9 av1 ffv1 mpeg4 mjpeg (default by extension: .mp4/.mov "
    "h264, .webm vp9, .mkv ffv1, .avi mjpeg; see `pipeline codecs`)."))]
Crf = Annotated[int | None, typer.Option("--crf", help=(
    "Quality: x264/x265/VP9/AV1 constant rate factor, MPEG-4/MJPEG quantiser (-q:v); "
    "lower is better."))]
Preset = Annotated[str | None, typer.Option("--preset", help=(
    "Encoder speed preset (x264/x265 ultrafast..placebo, VP9 realtime/good/best, AV1 0..13)."
    ))]
Audio = Annotated[str | None, typer.Option("--audio", metavar="auto|copy|none", help=(
    "The input's sound: auto copies it where the container takes it and browsers play it "
    "there, else re-encodes it (default); copy copies whatever the container takes; none "
    "writes no sound."))]
NoAudio = Annotated[bool, typer.Option("--no-audio", help="Write no sound (--audio none).")]


def _video(codec: str | None, crf: int | None, preset: str | None, no_audio: bool,
           audio: str | None) -> Any:
    """The codec flags as settings (codecs.py checks them against the output)."""
    from .io.codecs import VideoSettings

    if no_audio and audio not in (None, "none"):
        raise ConfigError(f"--no-audio and --audio {audio}: give one of them")
    return VideoSettings.from_flags(codec, crf, preset, False if no_audio else audio)


@contextmanager
def guarded(debug: bool) -> Iterator[None]:
    """PipelineError -> one line and its code; anything unexpected -> one line and 70."""
    try:
        yield
    except typer.Exit:
        raise
    except PipelineError as e:
        if debug:
            traceback.print_exc()
        fail(str(e))
        leave(e.exit_code, interrupted=e.exit_code in SIGNAL_CODES.values())
    except KeyboardInterrupt:
        fail("interrupted")
        leave(130, interrupted=True)
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback
        if debug:
            traceback.print_exc()
        fail(f"internal error: {type(e).__name__}: {e} (run with --debug for details)")
        leave(INTERNAL)


def _limits(max_kernel: int, max_outputs: int, max_pixels: float) -> Limits:
    return Limits(kernel=max_kernel, outputs=max_outputs, pixels=int(max_pixels * 1e6))


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    source: Annotated[str | None, typer.Option("--source", "-s", help=(
        "Camera index, video file, image folder/glob/%05d pattern, http:// or rtsp:// URL, "
        "or synthetic[:WxH][@fps][:frames] (default: the config's source)."))] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help=(
        "Video: .mp4 .mov (H.264) .webm (VP9) .mkv (FFV1, lossless) .avi (MJPEG); .npy "
        "(the float results); a folder/ or %05d.png pattern of images; or null "
        "(default: the config's output)."))] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help=(
        "Stop after this many frames."))] = None,
    show: Annotated[bool, typer.Option("--show", help="Show frames in a window.")] = False,
    serve: Annotated[str | None, typer.Option("--serve", metavar="HOST:PORT", help=(
        "Serve the live page (the result beside the source, figures, pause, snapshot) "
        "at http://HOST:PORT/; bound to an address other than loopback it needs the token "
        "printed in its URL."))] = None,
    serve_token: Annotated[str | None, typer.Option("--serve-token", metavar="TOKEN", help=(
        "The page's token (at least 8 letters, digits, - or _), instead of a random one; "
        "given, loopback needs it too."))] = None,
    realtime: Annotated[bool | None, typer.Option("--realtime/--no-realtime", help=(
        "Play a file at its own frame rate (default: when --show/--serve are the only "
        "outputs)."))] = None,
    loop: Annotated[bool, typer.Option("--loop", help=(
        "Replay a file or images from the start until stopped (with --show/--serve "
        "only)."))] = False,
    watch: Annotated[bool, typer.Option("--watch", help=(
        "Reload the config when its file changes: planned off the frame path, swapped in "
        "between two frames; an invalid one is reported and the running chain goes on."
        ))] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
    max_kernel: MaxKernel = 63,
    max_outputs: MaxOutputs = 64,
    max_pixels: MaxPixels = 8.3,
    max_memory: MaxMemory = 4.0,
    open_timeout: Annotated[float, typer.Option("--open-timeout", help=(
        "Live sources: seconds to wait for a connection."))] = 5.0,
    read_timeout: Annotated[float, typer.Option("--read-timeout", help=(
        "Live sources: seconds without a frame before reconnecting."))] = 2.0,
    reconnect_attempts: Annotated[int, typer.Option("--reconnect-attempts", min=1, help=(
        "Live sources: opens tried (back-off 0.5 s doubling to 8 s) before giving up."))] = 5,
    reconnect_budget: Annotated[float, typer.Option("--reconnect-budget", help=(
        "Live sources: seconds of trying before giving up."))] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show FFmpeg/OpenCV log lines.")
                       ] = False,
    segments: Annotated[int | None, typer.Option("--segments", min=1, help=(
        "Cut a video file at keyframes into N segments, filter them on local processes "
        "(or on --scheduler's workers) and join them without re-encoding."))] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=(
        "Dask scheduler address: filter a video file's segments on that cluster "
        "(--segments: how many; default 4 per worker)."))] = None,
    codec: Codec = None,
    crf: Crf = None,
    preset: Preset = None,
    no_audio: NoAudio = False,
    audio: Audio = None,
    strict: Strict = False,
    debug: Debug = False,
) -> None:
    """Filter one stream, live or file, and print a summary."""
    from .io.live import Reconnect
    from .io.sources import is_url
    from .runner import run_config

    with guarded(debug):
        limits = _limits(max_kernel, max_outputs, max_pixels)
        if serve_token is not None and serve is None:
            raise ConfigError("--serve-token: there is no page to protect (add --serve)")
        cfg = load_config(config, limits)
        if segments is not None or scheduler is not None:
            from .segments import run_from_config

            if show or serve is not None or max_frames is not None or loop or watch:
                raise ConfigError("--segments/--scheduler write a file: no --show, --serve, "
                                  "--max-frames, --loop or --watch with them")
            video = _video(codec, crf, preset, no_audio, audio)
            done = run_from_config(str(config), cfg, source, output, segments, scheduler,
                                   open_timeout, force, video)
            say(str(done))
            if done.interrupted:
                leave(exit_code(done.interrupted), interrupted=True)
            leave(0)
        retry = Reconnect(attempts=reconnect_attempts, budget=reconnect_budget)
        live = {"read_timeout": read_timeout, "retry": retry}
        if is_url(source if source is not None else cfg.source):
            live["open_timeout"] = open_timeout
        with frames_bar(err, not quiet and err.is_terminal) as update:
            stats = run_config(cfg, source=source, output=output, max_frames=max_frames,
                               show=show, serve=serve, force=force, progress=update,
                               limits=limits, live=live, max_memory=int(max_memory * 2**30),
                               video=_video(codec, crf, preset, no_audio, audio), announce=say,
                               realtime=realtime, loop=loop, watch=watch,
                               tell=watch_lines(err), serve_token=serve_token)
        say(str(stats))
        if stats.interrupted:
            leave(exit_code(stats.interrupted), interrupted=True)
        if strict and stats.losses():
            fail(f"{source if source is not None else cfg.source}: {_lossy(stats)}")
            leave(LOSSY)
        leave(0)


def _lossy(stats: Any) -> str:
    return (f"finished but lossy: {', '.join(stats.losses())}; "
            f"{stats.frames_written} frames written and kept (--strict)")


@app.command()
def plan(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    source: Annotated[str | None, typer.Option("--source", "-s", help=(
        "Plan for this source's frames (default: the config's source)."))] = None,
    size: Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT[xCHANNELS] instead "
                                             "of opening the source.")] = None,
    max_pixels: MaxPixels = 8.3,
    max_memory: MaxMemory = 4.0,
    debug: Debug = False,
) -> None:
    """Show, for each bank: padding per side, centre, border, method and why, predicted costs."""
    from .preflight import checked_chain, frames_to_check
    from .stages import model_totals

    with guarded(debug):
        limits = _limits(63, 64, max_pixels)
        cfg = load_config(config, limits)
        fmt, name, _ = frames_to_check(cfg, source, size, limits.pixels, open_live=True)
        chain, _ = checked_chain(cfg, fmt, name, False, limits, int(max_memory * 2**30),
                                 [])  # nothing absurd is planned
        chain.plan()
        say(f"input {fmt}")
        for step in chain.steps:
            h, w, c = step.out_shape
            say(f"\n{step.name}: -> {w}x{h}x{c}")
            for line in step.about:  # a model's layers this step does
                say(f"  layer {line}")
            if step.plan is not None:
                say("  " + str(step.plan).replace("\n", "\n  "))
        for line in model_totals(cfg):
            say(line)


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    source: Annotated[str | None, typer.Option("--source", "-s", help=(
        "Check against this source's frames (default: the config's source; a camera or "
        "URL is not opened: --size then, else 640x480x3)."))] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help=(
        "Check this output instead of the config's."))] = None,
    size: Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT[xCHANNELS] instead "
                                             "of the source's frames.")] = None,
    max_kernel: MaxKernel = 63,
    max_outputs: MaxOutputs = 64,
    max_pixels: MaxPixels = 8.3,
    max_memory: MaxMemory = 4.0,
    codec: Codec = None,
    crf: Crf = None,
    preset: Preset = None,
    debug: Debug = False,
) -> None:
    """Check a config without running it: everything `run` checks before its first frame
    (fields, weights and models, every stage's shapes for the source's frames, the frame
    size and the memory limits, the output and its codec settings, the channels an 8-bit
    output takes). Not checked: the file system's state (an output that exists, a
    missing folder) and the frames themselves."""
    from .io.sinks import open_sink
    from .preflight import checked_chain, frames_to_check
    from .runner import output_target

    with guarded(debug):
        limits = _limits(max_kernel, max_outputs, max_pixels)
        cfg = load_config(config, limits)
        fmt, name, note = frames_to_check(cfg, source, size, limits.pixels, open_live=False)
        target, settings = output_target(cfg, output, _video(codec, crf, preset, False, None)
                                         if codec or crf is not None or preset else None)
        sink = open_sink(target, settings=settings) if target is None or \
            isinstance(target, str) else target  # no file is made
        chain, _ = checked_chain(cfg, fmt, name, False, limits, int(max_memory * 2**30),
                                 [sink])
        h, w, c = chain.out_shape
        say(f"{config}: ok ({len(chain.steps)} stages; {fmt.width}x{fmt.height}x"
            f"{fmt.channels} -> {w}x{h}x{c}{note})")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller frames, fewer runs.")] = False,
    debug: Debug = False,
) -> None:
    """Calibrate the method choice on this machine (the C kernels on uint8 frames, as
    cameras and files give them) and save FFTW wisdom (a minute or so)."""
    from .engine import calibrate, planner
    from .engine.cache import cache_dir

    with guarded(debug):
        before = planner.constants()
        shapes = ((360, 640, 3),) if quick else ((720, 1280, 3), (1080, 1920, 3))
        measured = calibrate.run(scale=0.5 if quick else 1.0, repeat=3 if quick else 5,
                                 wisdom_shapes=shapes,
                                 progress=lambda what: err.print(f"measuring {what}",
                                                                 markup=False))
        table = Table(title="cost constants")
        for col in ("constant", "before", "measured"):
            table.add_column(col, justify="right" if col != "constant" else "left")
        for name, value in measured.items():
            table.add_row(name, f"{before[name]:.4g}", f"{value:.4g}")
        out.print(table)
        say(f"saved to {cache_dir()}")


@app.command()
def filters() -> None:
    """List the built-in kernels and their parameters."""
    from .kernels import describe_builtins

    table = Table(title="built-in kernels ({builtin: name, param: value} in YAML)")
    table.add_column("name")
    table.add_column("parameters (defaults)")
    table.add_column("what it is")
    for name, params, doc in describe_builtins():  # plain text: no reST ``quotes``, no markup
        table.add_row(*(Text(cell.replace("``", "")) for cell in (name, params, doc)))
    out.print(table)


@app.command()
def codecs() -> None:
    """List the video codecs, what this machine's PyAV can encode, and their settings."""
    from .io.codecs import listing

    table = Table(title="video codecs (--codec, --crf, --preset; YAML output: {codec, crf, "
                        "preset})")
    for col in ("codec", "encoder", "containers", "crf (default)", "presets (default)",
                "what it is"):
        table.add_column(col)
    for row in listing():
        table.add_row(*map(Text, row))
    out.print(table)


@app.command()
def batch(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    inputs: Annotated[list[str], typer.Argument(help="Video files (or image folders).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the outputs.")],
    ext: Annotated[str, typer.Option("--ext", help="Output extension (.mkv .mp4 .mov .webm "
                                     ".avi .npy).")] = ".mkv",
    workers: Annotated[int, typer.Option("--workers", min=1, help=(
        "Local worker processes, a file each at a time (default: one a core)."))
        ] = max(1, (os.cpu_count() or 2)),
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=(
        "Dask scheduler address (tcp://host:8786): run on that cluster."))] = None,
    open_timeout: Annotated[float, typer.Option("--open-timeout", min=0.1, help=(
        "--scheduler: seconds to wait for the scheduler to answer."))] = 10.0,
    worker_timeout: Annotated[float, typer.Option("--worker-timeout", min=1.0, help=(
        "--scheduler: seconds the cluster may have no worker at all before the batch "
        "ends (exit 5), the files not finished named."))] = 60.0,
    force: Annotated[bool, typer.Option("--force", help="Redo finished outputs.")] = False,
    clean: Annotated[bool, typer.Option("--clean", help=(
        "First remove what earlier stopped batches left in --out (their files' temporary "
        "names; listed without this), never any other file."))] = False,
    allow_network: Annotated[bool, typer.Option("--allow-network", help=(
        "Allow URLs among the inputs (a batch reads files; a stream never ends)."))] = False,
    codec: Codec = None,
    crf: Crf = None,
    preset: Preset = None,
    no_audio: NoAudio = False,
    audio: Audio = None,
    strict: Strict = False,
    debug: Debug = False,
) -> None:
    """Filter many files in parallel; a rerun skips outputs proven finished, so it resumes."""
    from .batchrun import BatchSpec, run_batch

    with guarded(debug):
        spec = BatchSpec(config, tuple(inputs), out_dir, ext, workers, scheduler, open_timeout,
                         worker_timeout, force, clean, allow_network, strict,
                         _video(codec, crf, preset, no_audio, audio))
        code, signame = run_batch(spec, say, fail,
                                  lambda n: files_bar(err, n, err.is_terminal))
        if signame:
            say(f"interrupted by {signame}: what finished is listed above; unfinished "
                "outputs stay at their temporary names")
            leave(code, interrupted=True)
        if code:
            raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
