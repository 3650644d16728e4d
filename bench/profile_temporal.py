"""Where a propagated film's time goes: cProfile of one tiny run at 640x360, the slowest functions by own time.

Run: python bench/profile_temporal.py [--clip PATH] [--frames 72] [--size 640x360] [--threads 2] [--top 18]
[--instances N]

The clip is trimmed and rescaled as bench_temporal.py does (``--instances N``: its N boxed instance texts, flow
tracker); one warm-up run (engine load, caches), then the
profiled run of the same film with ``--temporal propagate``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "video" /
                    "bigbuckbunny.mp4")
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--instances", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from bench_temporal import instance_shots, trim

    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run

    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        film = trim(args.clip, tmp / "gt.mkv", args.frames, (w, h))
        shots = None
        if args.instances:
            shots = tmp / "boxes.yaml"
            shots.write_text(instance_shots(args.instances, (w, h)), encoding="utf-8")

        def opts() -> ColorizeOptions:
            return ColorizeOptions(preset="tiny", temporal="propagate", keyframe_interval=24, quiet=True,
                                   codec="ffv1", threads=args.threads, shots=shots,
                                   tracker="flow" if shots else None)

        colorize_run([film], tmp / "warm.mkv", opts())
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        colorize_run([film], tmp / "out.mkv", opts())
        profile.disable()
        seconds = time.perf_counter() - t0
    print(f"{args.frames} frames at {args.size}: {seconds:.1f} s, {args.frames / seconds:.2f} fps; command: "
          f"python bench/profile_temporal.py {' '.join(sys.argv[1:])}")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
