"""Peak memory and speed of a film run against its length: a 1-minute and a 5-minute 480p film, or
a 100-frame and a 1000-frame single shot.

Memory must be bounded by one segment's working set (with the temporal stage: the window between two
keyframes), not by the film's length: the longer film's peak RSS should be within 1.2x of the shorter's.

    python bench/bench_memory.py [--fps 12] [--minutes 1 5]
    python bench/bench_memory.py --frames 100 1000 --size 640x360 --tracker flow

Generates h264 films with an AAC track (tests/media.py), a shots.yaml with one boxed instance over the
whole film (one shot), runs `restorer colorize --preset stencil` (the default temporal stage:
keyframes and flow propagation) in a child process and reads the child's peak RSS (ru_maxrss) from
os.wait4.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import make_clip  # noqa: E402

W, H = 854, 480  # --size changes them


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def pattern(index: int) -> np.ndarray:
    x = np.arange(W, dtype=np.int32)[None, :]
    y = np.arange(H, dtype=np.int32)[:, None]
    return (((x + 3 * index) ^ (y - index)) & 0xFF).astype(np.uint8)


def run(film: Path, out: Path, shots: Path, preset: str, tracker: str) -> tuple[float, float]:
    cmd = ["restorer", "colorize", str(film), "-o", str(out), "--shots", str(shots), "--preset", preset,
           "--tracker", tracker, "--quiet", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    global W, H
    ap = argparse.ArgumentParser()
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 5])
    ap.add_argument("--frames", type=int, nargs="+", default=None, help="film lengths in frames (not --minutes)")
    ap.add_argument("--size", default="854x480", help="WxH")
    ap.add_argument("--preset", default="stencil")
    ap.add_argument("--tracker", default="static")
    args = ap.parse_args()
    W, H = (int(v) for v in args.size.lower().split("x"))
    lengths = args.frames or [int(m * 60 * args.fps) for m in args.minutes]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {W}x{H} h264 at {args.fps} fps; preset {args.preset}, "
          f"tracker {args.tracker}; command: python bench/bench_memory.py {' '.join(sys.argv[1:])}")
    print("| film | frames | wall s | frames/s | peak RSS MiB |\n| --- | --- | --- | --- | --- |")
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        shots = Path(tmp) / "s.yaml"
        for n in lengths:
            minutes = n / (60 * args.fps)
            film = make_clip(Path(tmp) / f"film{minutes}.mp4", frames=n, size=(W, H), rate=Fraction(args.fps),
                             pattern=pattern, crf=28)
            shots.write_text("version: 1\nshots:\n  - instances:\n      - name: car\n        text: a red car\n"
                             "        prompts:\n          - frame: 0\n"
                             f"            box: [{W // 8}, {H // 5}, {W // 2}, {H * 5 // 8}]\n")
            wall, rss = run(film, Path(tmp) / f"out{minutes}.mp4", shots, args.preset, args.tracker)
            peaks.append(rss)
            print(f"| {minutes:.2f} min | {n} | {wall:.1f} | {n / wall:.1f} | {rss:.0f} |", flush=True)
    print(f"peak RSS, longest / shortest: {peaks[-1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    main()
