"""tiny and anchors on ONNX Runtime against torch, in one run: tiny's automatic path (features + colour prior,
what a photo without texts costs) and a frame with one instance text (the diffusion steps through the U-Net,
ControlNet and instance branch); anchors' automatic frame (both graphs and the anchor choice between them).

Run: python bench/bench_onnx.py [--size 512] [--repeat 5] [--threads 2]

The first `--runtime onnx` exports into the cache ($RESTORER_CACHE, or ~/.cache/restorer/onnx); this
bench exports into a temporary cache first and reports that time apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(work, repeat: int, warm: bool = True):
    """(the last result, the median seconds of ``repeat`` calls of ``work``), after one warm-up call."""
    if warm:
        work()
    runs, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = work()
        runs.append(time.perf_counter() - t0)
    return out, statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from restorer.models.engine import FrameInput, InstanceText, ShotContext
    from restorer.presets import load_preset, open_engine

    rng = np.random.default_rng(0)
    import cv2

    luma = cv2.GaussianBlur(rng.random((args.size, args.size)).astype(np.float32), (0, 0), 4)
    luma = (luma - luma.min()) / (luma.max() - luma.min())
    mask = np.zeros((1, args.size, args.size), bool)
    mask[0, args.size // 4: args.size // 2, args.size // 4: args.size // 2] = True
    frame_auto = FrameInput(0, luma, np.zeros((0, args.size, args.size), bool))
    frame_inst = FrameInput(0, luma, mask)
    ctx = ShotContext(seed=0, prompt=None, instances=(InstanceText("coat", "a red coat"),),
                      size=(args.size, args.size))
    rows, outputs, anchors = {}, {}, {}
    for preset, table in (("tiny", rows), ("anchors", anchors)):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["RESTORER_CACHE"] = tmp
            for runtime in ("torch", "onnx"):
                t0 = time.perf_counter()
                engine = open_engine(load_preset(preset), runtime=runtime, threads=args.threads)
                opened = time.perf_counter() - t0
                key = runtime if preset == "tiny" else f"anchors_{runtime}"
                outputs[key], auto = timed(lambda e=engine: e.automatic(frame_auto), args.repeat)
                table[runtime] = (opened, auto)
                if preset == "tiny":
                    outputs[key + "_inst"], inst = timed(lambda e=engine: next(iter(e.shot(ctx, [frame_inst]))),
                                                         max(1, args.repeat // 2), warm=False)
                    table[runtime] += (inst,)
    print(f"tiny at {args.size}x{args.size}, {args.threads} threads, median of {args.repeat}; command: "
          f"python bench/bench_onnx.py {' '.join(sys.argv[1:])}")
    print("| runtime | open s (onnx: includes the export) | automatic s | one instance text s |")
    print("| --- | --- | --- | --- |")
    for runtime, (opened, auto, inst) in rows.items():
        print(f"| {runtime} | {opened:.1f} | {auto:.3f} | {inst:.2f} |")
    print("\n| anchors runtime | open s (onnx: includes the export) | automatic s |\n| --- | --- | --- |")
    for runtime, (opened, auto) in anchors.items():
        print(f"| {runtime} | {opened:.1f} | {auto:.3f} |")
    d = np.linalg.norm(outputs["anchors_onnx"] - outputs["anchors_torch"], axis=-1)
    print(f"anchors onnx / torch time: {anchors['onnx'][1] / anchors['torch'][1]:.2f}x; a*b* difference: mean "
          f"{d.mean():.2e}, max {d.max():.2e}\n")
    t, o = rows["torch"], rows["onnx"]
    print(f"onnx / torch time: automatic {o[1] / t[1]:.2f}x, instance frame {o[2] / t[2]:.2f}x")
    for key in ("", "_inst"):
        d = np.linalg.norm(outputs["onnx" + key] - outputs["torch" + key], axis=-1)
        print(f"a*b* difference onnx vs torch{key or ' (automatic)'}: mean {d.mean():.2e}, max {d.max():.2e}")


if __name__ == "__main__":
    main()
