"""MT-Color benches: PMAM grouped vs dense, multi-instance vs plain DDIM, tiny s/frame, region spread.

Run: python bench/bench_mtcolor.py [--quick]   (CPU, 2 threads; prints Markdown tables)
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from restorer.models.engine import FrameInput, InstanceText, ShotContext
from restorer.models.mtcolor.regions import dense_attention, grouped_attention

HEADS, HEAD_DIM, BATCH = 8, 40, 2  # SD 1.5's first level: width 320 = 8 x 40; batch 2 = CFG pair


def region_layout(side: int, regions: int) -> torch.Tensor:
    """Background on the left half, the right half split evenly into regions - 1 horizontal bands."""
    ids = torch.zeros(side, side, dtype=torch.long)
    bands = torch.arange(side) * (regions - 1) // side + 1
    ids[:, side // 2:] = bands[:, None]
    return ids.flatten()[None].expand(BATCH, -1)


def timed(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def bench_pmam(grids: list[int], dense_max: int, repeats: int) -> None:
    print("| grid | regions | largest region | grouped ms | dense ms | speed-up | grouped attn MB | dense attn MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for side in grids:
        n = side * side
        q, k, v = (torch.randn(BATCH, HEADS, n, HEAD_DIM) for _ in range(3))
        for r in (2, 8, 16):
            regions = region_layout(side, r)
            largest = int(torch.bincount(regions[0]).max())
            g_ms = timed(lambda: grouped_attention(q, k, v, regions), repeats) * 1e3  # noqa: B023  called at once
            mb = lambda m: BATCH * HEADS * m * m * 4 / 2 ** 20  # noqa: E731  one float32 score matrix
            if side <= dense_max:
                d_ms = timed(lambda: dense_attention(q, k, v, regions), repeats) * 1e3  # noqa: B023
                d_txt, ratio = f"{d_ms:.0f}", f"{d_ms / g_ms:.1f}x"
            else:
                d_txt, ratio = "not run", "-"
            print(f"| {side}² | {r} | {largest} | {g_ms:.0f} | {d_txt} | {ratio} | {mb(largest):.0f} | {mb(n):.0f} |")


def tiny_engine(alpha: float, crop: bool, steps: int):
    from pathlib import Path

    import yaml

    from restorer.models.mtcolor.engine import open_mtcolor

    opts = yaml.safe_load(Path("restorer/presets/tiny.yaml").read_text())["options"]
    return open_mtcolor({**opts, "crop": crop}, device="cpu", weights=None, base=None,
                        overrides={"alpha": alpha, "steps": steps})


def frame_inputs(n: int, size: int = 512):
    masks = np.zeros((n, size, size), bool)
    for i in range(n):  # 8 instances of about 1/16 of the frame each, on a 4 x 2 layout
        y, x = (i // 2) * size // 4, (i % 2) * size // 2
        masks[i, y + 8:y + size // 4 - 8, x + 16:x + size // 2 - 16] = True
    ctx = ShotContext(seed=1, prompt="an old photograph", instances=tuple(
        InstanceText(f"o{i}", f"a red object number {i}") for i in range(n)))
    luma = np.random.default_rng(0).random((size, size), dtype=np.float32)
    return ctx, [FrameInput(0, luma, masks)]


def bench_sampling(steps: int, repeats: int) -> None:
    print("| sampling (tiny, 512² frame -> 32² grid, 20 steps, guidance on) | s/frame | vs plain DDIM |")
    print("| --- | --- | --- |")
    base = None
    for label, n, alpha, crop in (("plain DDIM, 8 instances as conditions, alpha 0", 8, 0.0, True),
                                  ("multi-instance, 8 instances, alpha 0.2, crops", 8, 0.2, True),
                                  ("multi-instance, 8 instances, alpha 0.2, whole frame", 8, 0.2, False),
                                  ("no instances", 0, 0.2, True)):
        eng = tiny_engine(alpha, crop, steps)
        ctx, frames = frame_inputs(n)
        with torch.no_grad():
            s = timed(lambda: list(eng.shot(ctx, frames)), repeats)  # noqa: B023  called at once
        base = base or s
        print(f"| {label} | {s:.2f} | {s / base:.2f}x |")


def bench_spread() -> None:
    """How far a change of the grayscale inside a box spreads through one whole tiny U-Net step."""
    from restorer.models.mtcolor import tiny
    from restorer.models.mtcolor.model import Conditions

    model = tiny.build({"features": "none"}).eval()
    for g in model.adapter.gates():
        torch.nn.init.constant_(g, 0.5)
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 12:20, 12:20] = 1
    tokens = model.adapter.encoder(torch.randn(1, 1, 384), masks, torch.ones(1, 1, dtype=torch.bool))
    gray = torch.rand(1, 1, 32, 32) * 2 - 1
    gray2 = gray.clone()
    gray2[..., 12:20, 12:20] = torch.rand(8, 8)
    prompt = model.adapter.prompt_proj(torch.randn(1, 1, 384))
    z, t = torch.randn(1, 2, 32, 32), torch.tensor(500)
    with torch.no_grad():
        a = model(z, t, Conditions(prompt, masks, tokens, gray, gray))
        b = model(z, t, Conditions(prompt, masks, tokens, gray2, gray2))
    diff = (a - b).abs().amax(1)[0]
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    dist = torch.maximum((12 - yy).clamp_min(0) + (yy - 19).clamp_min(0),
                         (12 - xx).clamp_min(0) + (xx - 19).clamp_min(0))
    print("| cells outside region A (Chebyshev) | 0 (inside) | 1 | 2 | 4 | 8 | 12 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    row = [f"{float(diff[dist == d].max()):.2e}" for d in (0, 1, 2, 4, 8, 12)]
    print("| max abs change of eps | " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer grids and repeats")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, 2 threads\n")
    bench_pmam([32, 64] if args.quick else [32, 64, 96, 128], dense_max=64, repeats=2 if args.quick else 3)
    print()
    bench_sampling(20, 1 if args.quick else 2)
    print()
    bench_spread()


if __name__ == "__main__":
    main()
