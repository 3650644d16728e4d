"""tiny without texts on photos it never saw, from outside the training pool: scikit-image's own colour photos.

Run: python bench/bench_independent.py [--threads 2] [--size 512]

The training pool is ../shared/data/photos; the images bundled with scikit-image are reserved for
independent evaluation (never trained or tuned on). Each photo is resized to ``--size`` on its long side, made
gray (BT.601 luma), colorized by the default preset (tiny) with no texts, and compared with the original:
mean CIEDE2000 against the do-nothing gray output's, and colourfulness (Hasler & Süsstrunk) against the
original's. Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    left, _, _ = data.stereo_motorcycle()
    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
            "rocket": data.rocket(), "motorcycle": left}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from restorer.models.mtcolor.engine import open_mtcolor
    from restorer.pipelines.evaluate import colorize, image_metrics
    from restorer.presets import DEFAULT_PRESET, load_preset

    engine = open_mtcolor(dict(load_preset(DEFAULT_PRESET).options), device="cpu", weights=None, base=None,
                          overrides={})
    rows, ours, gray = [], [], []
    for name, rgb in photos().items():
        im = Image.fromarray(rgb[..., :3])
        scale = args.size / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        gt = np.asarray(im, dtype=np.float64)
        luma = (gt @ np.array([0.299, 0.587, 0.114]) / 255).astype(np.float32)
        none = np.zeros((0, *luma.shape), bool)
        ours.append(image_metrics(colorize(engine, luma, [], none, 0), gt))
        gray.append(image_metrics(colorize(None, luma, [], none, 0), gt))
        rows.append(f"| {name} | {ours[-1]['ciede2000']:.2f} | {gray[-1]['ciede2000']:.2f} | "
                    f"{ours[-1]['colourfulness_pred'] / ours[-1]['colourfulness_gt']:.2f} |")
    print(f"preset {DEFAULT_PRESET}, no texts, long side {args.size}\n")
    print("| photo | CIEDE2000 ours | CIEDE2000 gray | colourfulness / truth |\n| --- | --- | --- | --- |")
    print("\n".join(rows))
    mean = lambda ms, k: float(np.mean([m[k] for m in ms]))  # noqa: E731
    print(f"| **mean** | **{mean(ours, 'ciede2000'):.2f}** | **{mean(gray, 'ciede2000'):.2f}** | "
          f"**{mean(ours, 'colourfulness_pred') / mean(ours, 'colourfulness_gt'):.2f}** |")


if __name__ == "__main__":
    main()
