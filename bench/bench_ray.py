"""Local vs Ray on this machine, in one run: a 10-shot generated film and a photo folder (stencil), and
the overhead Ray adds per task.

Run: python bench/bench_ray.py [--shots 10] [--frames-per-shot 24] [--photos 200]

2 cores cannot show scale-out: Ray's worth is on a cluster (README: "Running over a Ray cluster"). What
this measures is what Ray costs: the cluster start, the actors opening the engine, and per task.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import make_clip  # noqa: E402

W, H = 320, 240


def pattern_for(shots: int, per: int):
    """Each shot its own picture (a hard cut between them) moving a pixel a frame."""
    def pattern(i: int) -> np.ndarray:
        shot = i // per
        x = np.arange(W)[None, :]
        y = np.arange(H)[:, None]
        return ((((x + i) * (shot + 1)) ^ (y * (3 + shot))) & 0xFF).astype(np.uint8)
    return pattern


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--frames-per-shot", type=int, default=24)
    ap.add_argument("--photos", type=int, default=200)
    args = ap.parse_args()
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = args.shots * args.frames_per_shot
        film = make_clip(tmp / "film.mp4", frames=n, size=(W, H), pattern=pattern_for(args.shots,
                                                                                      args.frames_per_shot))
        shots = tmp / "film.shots.yaml"
        shots.write_text("version: 1\nshots:\n" + "".join(
            f"  - frames: [{k * args.frames_per_shot}, {(k + 1) * args.frames_per_shot - 1}]\n    prompt: sepia\n"
            for k in range(args.shots)))
        photos = tmp / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.photos):
            cv2.imwrite(str(photos / f"p{i:04d}.png"),
                        cv2.GaussianBlur(rng.integers(0, 255, (120, 160), dtype=np.uint8), (0, 0), 2))
        base = ["restorer", "colorize", "--preset", "stencil", "--quiet", "--tracker", "static"]
        rows = []
        for backend in ("local", "ray"):
            t_film = timed(base + [str(film), "-o", str(tmp / f"film_{backend}.mkv"), "--shots", str(shots),
                                   "--backend", backend])
            t_photos = timed(base + [str(photos), "-o", str(tmp / f"out_{backend}"), "--backend", backend])
            rows.append((backend, t_film, n / t_film, t_photos, args.photos / t_photos))
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            @ray.remote
            def nothing(x):
                return x

            ray.get(nothing.remote(0))
            t0 = time.perf_counter()
            ray.get([nothing.remote(i) for i in range(200)])
            per_task = (time.perf_counter() - t0) / 200
        finally:
            ray.shutdown()
    print(f"command: python bench/bench_ray.py {' '.join(sys.argv[1:])}; {W}x{H} film of {args.shots} shots x "
          f"{args.frames_per_shot} frames, {args.photos} photos 160x120, stencil, 2 cores")
    print("| backend | film s | film frames/s | photos s | photos/s |\n| --- | --- | --- | --- | --- |")
    for b, tf, ff, tp, fp in rows:
        print(f"| {b} | {tf:.1f} | {ff:.1f} | {tp:.1f} | {fp:.1f} |")
    (_, lf, _, lp, _), (_, rf, _, rp, _) = rows
    print(f"Ray / local wall time: film {rf / lf:.2f}x, photos {rp / lp:.2f}x; "
          f"an empty Ray task round trip {per_task * 1000:.2f} ms (200 in flight)")


if __name__ == "__main__":
    main()
