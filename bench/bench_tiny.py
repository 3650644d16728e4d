"""Tiny preset with its shipped weights: seconds per 512x512 photo, whole photo path.

Run: python bench/bench_tiny.py [--threads 2] [--repeats 5] [--instances 0] [--prompt TEXT] [--weights DIR]
     [--set KEY=VALUE ...]   (e.g. --weights OLD --set prior_flip=false: a previous model as it shipped)

Times what ``restorer colorize photo.png --preset tiny`` spends per photo once the engine is
open: engine (EfficientNet-Lite0 features, the colour prior, guided DDIM steps for the instances
and, with a global prompt, for the background), luma-guided chroma upsampling and recombination.
The "DDIM steps run" column counts the steps of the global sample and of the instances' (batched)
sample: without texts the colour prior alone colours the photo and no step runs. Loading the models
(once per run) is reported apart. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch


def photo(size: int = 512) -> np.ndarray:
    """A smooth gray test picture with edges (luma in [0, 1])."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    luma = 0.3 + 0.4 * xx * (1 - yy) + 0.2 * np.sin(8 * xx) * np.cos(6 * yy)
    luma[size // 4: size // 2, size // 3: 2 * size // 3] = 0.8
    return np.clip(luma, 0, 1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--instances", type=int, default=0, help="instance masks (bands) with texts")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--prompt", default=None, help="a global prompt for the photo")
    ap.add_argument("--weights", type=Path, default=None, help="a tiny weights folder (default: the shipped one)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="engine option override, e.g. prior_flip=false (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from restorer.models.engine import InstanceText, ShotContext
    from restorer.models.mtcolor.engine import open_mtcolor
    from restorer.models.mtcolor.tiny import shipped
    from restorer.pipelines.photo import colorize_frame
    from restorer.presets import load_preset

    t0 = time.perf_counter()
    preset = load_preset("tiny")
    import yaml

    overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
    engine = open_mtcolor(dict(preset.options), device="cpu", weights=args.weights, base=None, overrides=overrides)
    load_s = time.perf_counter() - t0
    luma = photo(args.size)
    masks = np.zeros((args.instances, args.size, args.size), bool)
    colours = ["red", "blue", "green", "yellow", "purple", "orange"]
    for k in range(args.instances):
        masks[k, :, k * args.size // (args.instances + 1):(k + 1) * args.size // (args.instances + 1)] = True
    ctx = ShotContext(seed=0, prompt=args.prompt, size=luma.shape, instances=tuple(
        InstanceText(f"i{k}", f"a {colours[k % 6]} object") for k in range(args.instances)))

    def once() -> None:
        colorize_frame(engine, ctx, luma, masks)

    once()  # warm-up (builds the recombination table)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    print(f"weights: {args.weights or shipped() or 'random init (none shipped)'} {overrides or ''}; "
          f"{platform.processor() or platform.machine()}, "
          f"{args.threads} torch threads, torch {torch.__version__}")
    steps = int(preset.options.get("steps"))
    opts = engine.opts
    glob = 0
    if args.prompt:  # the global sample runs from the noised prior for this share of the steps
        glob = round(max(opts.prior_strength, engine.prompt_strength) * steps)
    elif engine.prior is None:
        glob = steps
    run = f"{glob} + {steps if args.instances else 0}"
    print("| photo | instances | prompt | DDIM steps run (global + instances) | s/photo (median) | min | max "
          "| engine load s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.size}x{args.size} | {args.instances} | {'yes' if args.prompt else 'no'} | {run} | "
          f"{np.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | {load_s:.1f} |")


if __name__ == "__main__":
    main()
