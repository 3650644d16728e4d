"""Benchmarks and the real-clip check of the instance trackers.

    python bench/bench_tracking.py carphone          # face box at frame 60 -> bench/tracking_carphone.png
    python bench/bench_tracking.py fps               # flow tracker frames/s at 640x360 and 1280x720
    python bench/bench_tracking.py memory 100        # peak RSS of a 100-frame shot (run once per length)

Single-threaded (torch and OpenCV set to one thread) so numbers compare across machines.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restorer.models.tracking import (  # noqa: E402
    InstancePrompts,
    Prompt,
    ShotPrompts,
    contact_sheet,
    draw_preview,
    open_tracker,
    track_shot,
)

CLIP = ROOT.parent / "shared" / "data" / "video" / "carphone_pristine.mp4"
FACE_BOX = (54.0, 30.0, 106.0, 98.0)  # x0, y0, x1, y1 on frame 60, drawn by eye


def _one_thread() -> None:
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def clip_reader(path: Path):
    """A frame source over a video file with PyAV: decodes from the start, keeps nothing."""
    import av

    def read(start: int, end: int):
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i > end:
                    break
                if i >= start:
                    yield i, frame.to_ndarray(format="gray")
    return read


def carphone(out: Path) -> None:
    read = clip_reader(CLIP)
    n = sum(1 for _ in read(0, 10 ** 9))
    _, first = next(read(0, 0))
    shot = ShotPrompts(0, n - 1, first.shape, (
        InstancePrompts("face", (Prompt(60, box=FACE_BOX),)),))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = track_shot(open_tracker("flow"), shot, read, tmp)
        took = time.perf_counter() - t0
        show = sorted(set(range(0, n, 10)) | {60, n - 1})
        frames = {t: luma for t, luma in read(0, n - 1) if t in show}
        tiles = [draw_preview(frames[t], store.get(t), shot.names) for t in show]
        areas = {t: int(store.get(t)[0].sum()) for t in show}
    labels = [f"{t}{' (prompt)' if t == 60 else ''}" for t in show]
    sheet = contact_sheet(tiles, labels, columns=5)
    import cv2

    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"carphone: {n} frames tracked in {took:.1f} s -> {out}")
    print("face area by frame:", areas)


def _moving_source(size: tuple[int, int], n: int, seed: int = 0):
    """Frames of a panning texture with a textured disc crossing it; made on the fly."""
    import cv2

    h, w = size
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.standard_normal((h + 64, w + 64)).astype(np.float32), (0, 0), 2)
    fg = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2)
    yy, xx = np.mgrid[0:h, 0:w]

    def frame(t: int) -> np.ndarray:
        k = t % 200
        m = np.float32([[1, 0, -32 + 0.3 * k % 64], [0, 1, -32]])
        img = cv2.warpAffine(bg, m, (w, h))
        cx, cy, r = w * (0.2 + 0.003 * k), h * 0.5, h * 0.25
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img = np.where(disc, fg + 2.0, img)
        return np.clip(img * 40 + 128, 0, 255).astype(np.uint8), disc

    def read(start: int, end: int):
        for t in range(start, end + 1):
            yield t, frame(t)[0]
    return read, frame


def fps(sizes=((360, 640), (720, 1280)), n: int = 60) -> None:
    for h, w in sizes:
        read, frame = _moving_source((h, w), n)
        gen = time.perf_counter()
        for _ in read(0, n - 1):
            pass
        gen = time.perf_counter() - gen
        shot = ShotPrompts(0, n - 1, (h, w), (
            InstancePrompts("disc", (Prompt(n // 2, mask=frame(n // 2)[1]),)),
            InstancePrompts("box", (Prompt(n // 2, box=(w * .6, h * .2, w * .8, h * .6)),))))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            track_shot(open_tracker("flow"), shot, read, tmp)
            took = time.perf_counter() - t0 - gen
        print(f"flow {w}x{h}: {n} frames, 2 instances: {n / took:.1f} frames/s "
              f"(frame generation {gen:.1f} s excluded)")


def memory(n: int, size=(360, 640)) -> None:
    read, frame = _moving_source(size, n)
    shot = ShotPrompts(0, n - 1, size, (
        InstancePrompts("disc", (Prompt(n // 2, mask=frame(n // 2)[1]),)),))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        track_shot(open_tracker("flow"), shot, read, tmp)
        took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"flow {size[1]}x{size[0]}, {n} frames: peak RSS {peak:.0f} MiB, {took:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["carphone", "fps", "memory"])
    ap.add_argument("frames", nargs="?", type=int, default=100)
    args = ap.parse_args()
    _one_thread()
    if args.what == "carphone":
        carphone(ROOT / "bench" / "tracking_carphone.png")
    elif args.what == "fps":
        fps()
    else:
        memory(args.frames)


if __name__ == "__main__":
    main()
