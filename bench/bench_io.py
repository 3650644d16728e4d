"""Frames per second of the I/O path: decode -> Y' passthrough + neutral chroma -> encode.

Run: python bench/bench_io.py [--frames 60] [--codecs h264,ffv1]
Generates a 854x480 h264 clip with tests/media.py, then times LumaReader + SegmentWriter
(one segment per codec) and assemble(); prints the CPU model and the numbers as a
Markdown table row for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from media import make_clip  # noqa: E402

from restorer.io.decode import LumaReader  # noqa: E402
from restorer.io.encode import SegmentWriter, segment_suffix  # noqa: E402
from restorer.io.mux import assemble  # noqa: E402
from restorer.io.probe import probe  # noqa: E402


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def bench(src: Path, codec: str, work: Path) -> tuple[float, float]:
    info = probe(src)
    seg = work / f"seg-{codec}{segment_suffix(codec)}"
    start = time.perf_counter()
    with SegmentWriter(seg, info, codec) as writer:
        for frame in LumaReader(src, info):
            zero = np.zeros(frame.luma.shape, np.float32)  # gray
            writer.write(frame.index, frame.luma, zero, zero)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    assemble([seg], src, info, work / f"film-{codec}.mkv")
    return info.frame_count / encode_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--codecs", default="h264,ffv1,h265,prores")
    args = parser.parse_args()
    print(f"cpu: {cpu_model()}  cores: {len(Path('/proc/cpuinfo').read_text().split('processor')) - 1}")
    print(f"command: python bench/bench_io.py --frames {args.frames} --codecs {args.codecs}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = make_clip(work / "src.mp4", frames=args.frames, size=(854, 480), audio_streams=1)
        print("| codec | frames | decode+encode fps | assemble s |")
        print("| --- | --- | --- | --- |")
        for codec in args.codecs.split(","):
            fps, assemble_s = bench(src, codec, work)
            print(f"| {codec} | {args.frames} | {fps:.1f} | {assemble_s:.2f} |")


if __name__ == "__main__":
    main()
