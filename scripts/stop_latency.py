"""How fast a batch stops, by hand: signal -> the last process holding its stdout gone.

Makes three 900-frame 320x240 clips, runs ``pipeline batch`` on two workers, and once
both write, sends each signal the way it arrives in real use (Ctrl-C and a closed
terminal reach the whole process group; ``kill`` reaches the batch alone; SIGKILL leaves
the workers to notice for themselves). Per signal: seconds until the stdout pipe closes
(every worker included), the exit codes, and how many outputs got a final name (must be
0: none of them was whole).

    python scripts/stop_latency.py --trials 5
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from media import write_clips  # noqa: E402


def trial(folder: Path, sig: int, group: bool) -> tuple[float, int, int]:
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    inputs = sorted(str(p) for p in folder.glob("clip*.avi"))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "batch",
                             str(ROOT / "configs" / "edges.yaml"), *inputs, "--out", str(out),
                             "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    while len(glob.glob(str(out / "*.partial.mkv"))) < 2:
        time.sleep(0.02)
    time.sleep(0.5)
    sent = time.perf_counter()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    proc.communicate(timeout=60)
    seconds = time.perf_counter() - sent
    finals = [p for p in out.glob("*.mkv") if ".partial" not in p.name]
    return seconds, proc.returncode, len(finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_clips(folder, "clip", 3, n=900, width=320, height=240)
        print("| signal | sent to | seconds to exit (each trial) | exit codes | final names |")
        print("|---|---|---|---|---|")
        for sig, group in ((signal.SIGINT, True), (signal.SIGTERM, False),
                           (signal.SIGHUP, True), (signal.SIGKILL, False)):
            runs = [trial(folder, sig, group) for _ in range(args.trials)]
            print(f"| {sig.name} | {'process group' if group else 'the batch'} | "
                  f"{', '.join(f'{r[0]:.2f}' for r in runs)} | "
                  f"{sorted({r[1] for r in runs})} | {sum(r[2] for r in runs)} |")


if __name__ == "__main__":
    main()
