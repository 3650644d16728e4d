"""Where the hard evaluation's border-band leakage comes from: the engine, or upsampling the regions apart.

Run: python bench/leakage_sources.py DATA [--threads 2]

The requests of ``restorer eval --split DATA --hard`` (development split; the same regions, colours and
phrasings), each scored three ways in the band just outside its mask against the automatic output:
as measured (the instance's chroma, regions upsampled apart); the *automatic* chroma with the regions upsampled
apart (no instance colour at all: what the region-wise upsampling alone changes); and the instance's chroma
upsampled as one picture (what keeping the regions apart prevents).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from restorer.io.color import rgb_to_luma
    from restorer.metrics import border_band, delta_ab
    from restorer.models.engine import FrameInput, InstanceText, ShotContext
    from restorer.pipelines.evaluate import hard_request, object_regions
    from restorer.pipelines.options import shot_seed
    from restorer.pipelines.photo import chroma_rgb
    from restorer.presets import load_preset, open_engine
    from restorer.training.dataset.records import load_record, read_dataset

    engine = open_engine(load_preset("tiny"), device="cpu")

    def engine_ab(luma: np.ndarray, texts: list[str], masks: np.ndarray) -> np.ndarray:
        ctx = ShotContext(seed=shot_seed(0, 0), prompt=None, size=luma.shape,
                          instances=tuple(InstanceText(f"i{k}", t) for k, t in enumerate(texts)))
        (ab,) = list(engine.shot(ctx, [FrameInput(index=0, luma=luma, masks=masks)]))
        return ab  # as the engine gave it, with its background layer if it attached one

    def rgb255(luma: np.ndarray, ab: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        return np.round(np.clip(chroma_rgb(luma, ab, masks), 0, 1) * 255).astype(np.float64)

    rows, k = [], 0
    for rec in read_dataset(args.data, "val"):
        rgb, labels = load_record(args.data, rec)
        luma = rgb_to_luma(rgb)
        auto_ab = engine_ab(luma, [], np.zeros((0, *luma.shape), bool))
        auto = rgb255(luma, auto_ab, None)
        for inst in object_regions(rec)[:2]:  # as evaluate_hard picks them
            m = labels == inst["id"]
            text, _color = hard_request(inst, k)
            k += 1
            ab = engine_ab(luma, [text], m[None])
            band = border_band(m)
            rows.append([delta_ab(auto, rgb255(luma, ab, m[None]), band),
                         delta_ab(auto, rgb255(luma, auto_ab, m[None]), band),
                         delta_ab(auto, rgb255(luma, np.asarray(ab), None), band)])
    mean = np.mean(rows, axis=0)
    print(f"{len(rows)} requests; border-band leakage as measured {mean[0]:.3f}; automatic chroma, regions upsampled "
          f"apart {mean[1]:.3f}; instance chroma upsampled as one picture {mean[2]:.3f}; command: "
          f"python bench/leakage_sources.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
