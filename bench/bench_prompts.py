"""tiny with a global prompt and no instance texts, on a dataset split: does the prompt keep the colour?

Run: python bench/bench_prompts.py DATASET [--strength 0.3 0.6] [--split val] [--threads 1]

Each photo gets its dataset global text ("a warm, colourful photo of a brown bee, a beige area, ...") as the
shot's prompt; the background then runs ``prompt_strength`` of the DDIM steps from the noised colour prior.
Prints mean CIEDE2000 and the colourfulness ratio to the ground truth per strength (same measures as
``restorer eval``). These prompts name the true colours, so this is the kindest case for a prompt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--strength", type=float, nargs="+", default=[0.3])
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from restorer.metrics import image_metrics
    from restorer.models.mtcolor.engine import open_mtcolor
    from restorer.pipelines.evaluate import colorize
    from restorer.presets import load_preset
    from restorer.training.dataset.records import load_record, read_dataset

    records = read_dataset(args.data, args.split)
    print("| prompt strength | photos | CIEDE2000 | colourfulness / truth |\n| --- | --- | --- | --- |")
    for strength in args.strength:
        engine = open_mtcolor(dict(load_preset("tiny").options), device="cpu", weights=None, base=None,
                              overrides={"prompt_strength": strength})
        metrics = []
        for rec in records:
            rgb, _ = load_record(args.data, rec)
            luma = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
            out = colorize(engine, luma, [], np.zeros((0, *luma.shape), bool), 0, prompt=rec["global"])
            metrics.append(image_metrics(out, rgb.astype(np.float64) * 255))
        ratio = np.mean([m["colourfulness_pred"] for m in metrics]) / np.mean([m["colourfulness_gt"] for m in metrics])
        print(f"| {strength} | {len(metrics)} | {np.mean([m['ciede2000'] for m in metrics]):.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
