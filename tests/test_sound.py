"""Sound never vanishes silently (issue 30, item 6): 44.1 kHz AAC into WebM's Opus, an
undecodable packet skipped and counted, MP4 sound a browser plays, and a summary that
says what was written (checked against the file: seconds and packets). Also item 7's
"lossy": only what was lost on the way in, never a frame count a container estimates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from commands import cli
from media import damage_sound, write_clip

ROOT = Path(__file__).parent.parent
EDGES = ROOT / "configs" / "edges.yaml"


def sound(path: Path) -> tuple[str | None, int, float, float]:
    """(codec, packets, seconds of sound, seconds of video) the file holds (PyAV)."""
    import av

    ends = {"audio": 0.0, "video": 0.0}
    packets, codec = 0, None
    with av.open(str(path)) as c:
        if c.streams.audio:
            codec = c.streams.audio[0].codec_context.codec.canonical_name  # not mp3float
        for p in c.demux():
            if p.pts is None or not p.size:
                continue
            end = float((p.pts + (p.duration or 0)) * p.time_base)
            ends[p.stream.type] = max(ends[p.stream.type], end)
            packets += p.stream.type == "audio"
    return codec, packets, ends["audio"], ends["video"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sound")
    made = {
        "aac44.mkv": dict(audio="aac", audio_rate=44100),
        "ac3.mp4": dict(codec="libx264", audio="ac3"),
        "mp3.mp4": dict(codec="libx264", audio="libmp3lame"),
        "aac.mp4": dict(codec="libx264", audio="aac"),
        "opus.mkv": dict(audio="libopus"),
        "ac3.avi": dict(audio="ac3"),
    }
    out = {}
    for name, options in made.items():
        write_clip(folder / name, n=180, width=96, height=64, **options)
        out[name] = folder / name
    damage_sound(out["ac3.avi"], folder / "cut.avi")  # the first packet cut short
    out["cut.avi"] = folder / "cut.avi"
    damage_sound(out["ac3.avi"], folder / "mute.avi", which=set())  # every packet
    out["mute.avi"] = folder / "mute.avi"
    return out


def summary_sound(stdout: str) -> tuple[str, float, int]:
    found = re.search(r"sound (\w+) \(([^)]+)\), ([\d.]+) s in (\d+) packets", stdout)
    assert found, stdout
    return found.group(1), float(found.group(3)), int(found.group(4))


def test_44k_aac_from_matroska_keeps_its_sound_in_webm(tmp_path, clips):
    """Was: 0.07 s of 6 s kept, and the summary said opus (re-encoded from aac)."""
    result = cli("run", EDGES, "-s", clips["aac44.mkv"], "-o", "o.webm", cwd=tmp_path)
    assert result.returncode == 0 and "warning" not in result.stdout, result.stdout
    codec, packets, audio, video = sound(tmp_path / "o.webm")
    assert codec == "opus" and video == pytest.approx(6.0, abs=0.05)
    assert abs(audio - video) < 0.1, (audio, video)
    said, seconds, count = summary_sound(result.stdout)
    assert said == "opus" and count == packets and seconds == pytest.approx(audio, abs=0.03)


def test_an_undecodable_sound_packet_is_skipped_and_counted(tmp_path, clips):
    """One AC-3 packet cut short at the start (OpenCV's Megamind.avi): ffmpeg skips it and
    keeps the rest; so does this. Was: a WebM whose Opus track had no packet at all."""
    result = cli("run", EDGES, "-s", clips["cut.avi"], "-o", "o.webm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"warning: .*cut\.avi: 1 undecodable sound packet skipped \(0\.03 s\); "
                     r"the rest of its sound kept", result.stdout), result.stdout
    assert "[ac3 @" not in result.stderr  # FFmpeg's own log lines stay off (--verbose)
    codec, packets, audio, video = sound(tmp_path / "o.webm")
    assert codec == "opus" and audio > video - 0.15, (audio, video)
    assert summary_sound(result.stdout)[2] == packets
    strict = cli("run", EDGES, "-s", clips["cut.avi"], "-o", "s.webm", "--strict",
                 cwd=tmp_path)
    assert strict.returncode == 6
    assert re.search(r"error: .*cut\.avi: finished but lossy: 1 undecodable sound packet "
                     r"skipped", strict.stderr), strict.stderr
    copied = cli("run", EDGES, "-s", clips["cut.avi"], "-o", "o.mkv", cwd=tmp_path)
    assert copied.returncode == 0 and "undecodable" not in copied.stdout  # copied, not decoded
    assert sound(tmp_path / "o.mkv")[1] == sound(clips["cut.avi"])[1]


def test_the_summary_says_what_the_file_holds_even_when_little(tmp_path, clips):
    """Every AC-3 packet of an AVI cut short (its timestamps come from byte offsets, so
    they shrink too): 1.5 s of sound for 6 s of video. The summary says 1.5 s, as the file
    holds, not just "opus (re-encoded from ac3)"."""
    result = cli("run", EDGES, "-s", clips["mute.avi"], "-o", "o.webm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    codec, packets, audio, video = sound(tmp_path / "o.webm")
    said, seconds, count = summary_sound(result.stdout)
    assert (said, count) == ("opus", packets) and seconds == pytest.approx(audio, abs=0.03)
    assert audio < video - 3


def test_a_skipped_packet_mid_stream_keeps_the_rest_in_step(tmp_path, clips):
    """Packets 50 and 51 of 188 garbled, refused by the decoder (Matroska keeps each
    packet's time): they are counted, and the sound after them stays at its own time, in
    step with the frames, not 64 ms early."""
    import av

    damaged = tmp_path / "mid.mkv"
    write_clip(tmp_path / "ac3.mkv", n=180, width=96, height=64, audio="ac3")
    damage_sound(tmp_path / "ac3.mkv", damaged, which={50, 51}, garble=True)
    result = cli("run", EDGES, "-s", damaged, "-o", "o.webm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 undecodable sound packets skipped (0.06 s)" in result.stdout, result.stdout
    with av.open(str(tmp_path / "o.webm")) as c:  # the 64 ms hole stays where it was
        starts = [float(p.pts * p.time_base) for p in c.demux(c.streams.audio[0])
                  if p.size and p.pts is not None]
    holes = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if b - a > 0.03]
    assert len(holes) == 1 and holes[0][0] == pytest.approx(49 * 0.032, abs=0.03), holes
    _, _, audio, video = sound(tmp_path / "o.webm")
    assert abs(audio - video) < 0.05, (audio, video)


@pytest.mark.parametrize("clip, flags, codec, how", [
    ("ac3.mp4", (), "aac", "re-encoded from ac3"),  # AC-3 in an MP4 plays silent in Chromium
    ("ac3.mp4", ("--audio", "copy"), "ac3", "copied"),  # asked for: copied anyway
    ("aac.mp4", (), "aac", "copied"),
    ("mp3.mp4", (), "mp3", "copied"),
    ("opus.mkv", (), "opus", "copied"),
])
def test_mp4_sound_is_what_browsers_play_unless_a_copy_is_asked(tmp_path, clips, clip, flags,
                                                                codec, how):
    result = cli("run", EDGES, "-s", clips[clip], "-o", "o.mp4", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got, packets, audio, video = sound(tmp_path / "o.mp4")
    assert got == codec and abs(audio - video) < 0.1
    said = re.search(r"sound (\w+) \(([^)]+)\)", result.stdout)
    assert said and said.groups() == (codec, how), result.stdout


def test_audio_flags_are_checked(tmp_path, clips):
    both = cli("run", EDGES, "-s", clips["aac.mp4"], "-o", "o.mp4", "--no-audio", "--audio",
               "copy", cwd=tmp_path)
    assert both.returncode == 2 and "--no-audio and --audio copy" in both.stderr
    bad = cli("run", EDGES, "-s", clips["aac.mp4"], "-o", "o.mp4", "--audio", "loud",
              cwd=tmp_path)
    assert bad.returncode == 2 and "--audio: expected auto | copy | none" in bad.stderr


# ------------------------------------------------------------------ item 7: lossy
def test_a_whole_file_is_never_lossy_by_an_estimated_frame_count(tmp_path):
    """A variable frame rate read whole (OpenCV's count is duration x rate) and an
    MPEG-TS that starts at 1.4 s (its estimate is one too many) lose nothing: no warning,
    exit 0 under --strict. A file cut in half still does (fault cases I6)."""
    times = [i / 30 for i in range(40)] + [2.0 + i / 60 for i in range(40)] + \
        [3.5 + i / 25 for i in range(40)]
    write_clip(tmp_path / "vfr.mkv", n=len(times), width=64, height=48, times=times)
    write_clip(tmp_path / "t.ts", n=150, width=64, height=48, codec="libx264")
    for clip, n in (("vfr.mkv", 120), ("t.ts", 150)):
        result = cli("run", EDGES, "-s", clip, "-o", f"{clip}.mkv", "--strict", cwd=tmp_path)
        assert result.returncode == 0, (clip, result.stderr)
        assert f"frames: {n} read, {n} written" in result.stdout
        assert "warning" not in result.stdout, result.stdout


def test_batch_shows_each_files_warnings_and_strict_exits_6(tmp_path, clips):
    """Was: a plain 'ok' for the file whose sound lost a packet, and exit 0 under --strict."""
    result = cli("batch", EDGES, clips["cut.avi"], clips["aac44.mkv"], "--out", "out", "--ext",
                 ".webm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split(": ")[1]: line for line in result.stdout.splitlines()
             if line.startswith("ok: ")}
    cut = lines[str(clips["cut.avi"])]
    assert re.search(r"frames -> out/cut\.webm; warning: .*cut\.avi: 1 undecodable sound "
                     r"packet skipped \(0\.03 s\); the rest of its sound kept$", cut), cut
    assert "warning" not in lines[str(clips["aac44.mkv"])]
    strict = cli("batch", EDGES, clips["cut.avi"], clips["aac44.mkv"], "--out", "strict",
                 "--ext", ".webm", "--strict", cwd=tmp_path)
    assert strict.returncode == 6, strict.stderr
    assert "1 ok, 1 lossy, 0 failed" in strict.stdout
    assert re.search(r"error: .*cut\.avi: finished but lossy: 1 undecodable sound packet "
                     r"skipped", strict.stderr), strict.stderr
