"""What each part of the anchors engine changes, and its automatic-colour settings, on the development split.

Run: python bench/bench_anchors_ablation.py DATA [--split val] [--threads 2] [--sheet PNG] [--json FILE]
e.g. nice python bench/bench_anchors_ablation.py /tmp/w/DATA_final --sheet bench/anchors_ablation_sheet.png

Every photo of the split is made gray and colorized with no texts by the shipped anchors weights under each
variant below; mean CIEDE2000 against the photo's own colours, the paired difference against gray and against
the shipped setting (``base``) with 95 % bootstrap intervals (negative: closer to the truth), and colourfulness
of the mean output over the mean truth. Settings are chosen here (the development split), never on the test split.

Variants (inference-time switches of the trained model; the model is not retrained without the part):

* ``base``: the shipped preset (8 anchors, each its most likely bin);
* ``mean T``: each anchor the annealed mean of its distribution at temperature T (``colour: mean``);
* ``anchors K``: K anchors instead of 8;
* ``no refine``: the pixel refinement's residual off (the superpixel-diffused colour alone);
* ``grid``: hard square cells instead of the learned soft superpixels (pooling and diffusion on the grid);
* ``no affinity``: every primitive the plain mean of the anchors' colours instead of the learned affinity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _grid_association(gray: torch.Tensor) -> torch.Tensor:
    """Every pixel wholly in its own cell (candidate 4 is the offset (0, 0))."""
    a = torch.zeros(gray.shape[0], 9, *gray.shape[-2:], dtype=gray.dtype, device=gray.device)
    a[:, 4] = 1
    return a


def _no_refine(model):
    from restorer.models.anchors.superpixels import sp_diffuse

    def refine_projected(gray, s8, assoc, token_ab):
        b, cell = token_ab.shape[0], model.pixel_cell
        v = token_ab.transpose(1, 2).reshape(b, 2, gray.shape[-2] // cell, gray.shape[-1] // cell)
        return sp_diffuse(assoc, v, cell)

    return refine_projected


def _plain_mean(tokens: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    aff = anchors[:, None, :].expand(-1, anchors.shape[1], -1).to(tokens.dtype)
    aff = aff / aff.sum(-1, keepdim=True)
    eye = torch.eye(anchors.shape[1], dtype=tokens.dtype)[None]
    return torch.where(anchors[..., None], eye, aff)


VARIANTS = {
    "base": ({}, None),
    "mean T=0.2": ({"colour": "mean", "temperature": 0.2}, None),
    "mean T=0.38": ({"colour": "mean", "temperature": 0.38}, None),
    "mean T=0.7": ({"colour": "mean", "temperature": 0.7}, None),
    "anchors 4": ({"anchors": 4}, None),
    "anchors 16": ({"anchors": 16}, None),
    "no refine": ({}, lambda m: setattr(m, "refine_projected", _no_refine(m))),
    "grid": ({}, lambda m: setattr(m, "associate", _grid_association)),
    "no affinity": ({}, lambda m: setattr(m, "affinity", _plain_mean)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="dataset folder (restorer dataset build)")
    ap.add_argument("--split", default="val", choices=["val"], help="the development split only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sheet", type=Path, help="gray | variants | truth for the first 8 photos")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bench_anchors import dev_photos, draw_rows, recombined

    from restorer.io.color import rgb_to_luma
    from restorer.metrics import colourfulness, mean_ciede2000, paired_bootstrap
    from restorer.models.anchors.engine import open_anchors

    engines = {}
    for label, (options, patch) in VARIANTS.items():
        engine = open_anchors(options, device="cpu")
        if patch is not None:
            patch(engine.model)
        engines[label] = engine
    scores: dict[str, list[float]] = {k: [] for k in ["gray", *engines]}
    colour: dict[str, list[float]] = {k: [] for k in [*scores, "truth"]}
    rows = []
    for _, name, truth in dev_photos(args.data, args.split):
        gt = truth.astype(np.float64)
        luma = rgb_to_luma(gt / 255.0).astype(np.float32)
        outs = {"gray": recombined(luma, np.zeros((*luma.shape, 2), np.float32))}
        for label, engine in engines.items():
            outs[label] = recombined(luma, engine.colorize(luma)[0])
        for label, img in outs.items():
            scores[label].append(mean_ciede2000(img, gt))
            colour[label].append(colourfulness(img))
        colour["truth"].append(colourfulness(gt))
        if len(rows) < 8:
            rows.append([(outs["gray"], "gray")] + [(outs[k], f"{k} {scores[k][-1]:.1f}") for k in engines]
                        + [(gt, "truth")])
        print(f"  {name}: " + " ".join(f"{k} {v[-1]:.2f}" for k, v in scores.items()), flush=True)
    truth_col = float(np.mean(colour["truth"]))
    table = {}
    for label, values in scores.items():
        table[label] = {"ciede2000": float(np.mean(values)), "colourfulness_ratio": float(np.mean(colour[label])) /
                        truth_col, "vs_gray": paired_bootstrap(values, scores["gray"]),
                        "vs_base": paired_bootstrap(values, scores["base"])}
    n = len(scores["gray"])
    print(f"\ndevelopment split: {n} photos, no texts; command: python bench/bench_anchors_ablation.py "
          f"{' '.join(sys.argv[1:])}\n")
    print("| variant | CIEDE2000 | minus gray [95 % CI] | minus base [95 % CI] | colourfulness / truth |")
    print("| --- | --- | --- | --- | --- |")
    for label, row in table.items():
        g, b = row["vs_gray"], row["vs_base"]
        print(f"| {label} | {row['ciede2000']:.2f} | {g['mean']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}] | "
              f"{b['mean']:+.2f} [{b['low']:+.2f}, {b['high']:+.2f}] | {row['colourfulness_ratio']:.2f} |")
    if args.sheet:
        draw_rows(args.sheet, rows, cell=120)
        print(f"\nsheet: {args.sheet}")
    if args.json:
        args.json.write_text(json.dumps({"count": n, "table": table, "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
