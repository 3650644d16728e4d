"""What each part of the shipped tiny model changes: PMAM off, instance branch off, multi-instance sampling off.

Run: python bench/bench_ablation.py DATA [--split val] [--objects 1] [--shard K N] [--out DIR]
     python bench/bench_ablation.py --table DIR          # merge the shards' JSON into a Markdown table

On each photo of the split (the development split by default), the largest `--objects` regions covering
3-40 % of it (objects, not the background) each get a text on an otherwise automatic photo, one at a time:

- its own colour ("a red car", the dataset's text): CIEDE2000 inside the mask against the truth;
- a far training colour (`counter_color`): binding (hue within 25 deg, chroma >= 15) and leakage in the
  border band just outside the mask (up to 2 % of the diagonal) against the automatic output.

Configurations: `full` (as shipped); `pmam_off` (every PMAM gate at 0: tanh(0) = 0, the module adds
nothing); `branch_off` (every instance-branch gate at 0: the instance tokens reach nothing); `alpha0`
(no step runs the instances on their own: the multi-instance sampling off, `--alpha 0`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CONFIGS = ("full", "pmam_off", "branch_off", "alpha0")


def open_config(name: str):
    import torch

    from restorer.presets import load_preset, open_engine

    engine = open_engine(load_preset("tiny"), device="cpu", overrides={"alpha": 0.0} if name == "alpha0" else {})
    adapter = engine.model.adapter
    with torch.no_grad():
        if name == "pmam_off":
            for m in adapter.pmams.values():
                m.gate.zero_()
        if name == "branch_off":
            for m in adapter.branches.values():
                m.gate.zero_()
    return engine


def run(data: Path, config: str, split: str, objects: int, shard: tuple[int, int]) -> dict:
    from restorer import metrics
    from restorer.io.color import rgb_to_luma, srgb_to_lab
    from restorer.models.colornames import palette_lab
    from restorer.pipelines import evaluate as ev
    from restorer.pipelines.options import shot_seed
    from restorer.training.dataset.records import load_record, read_dataset

    engine, pal, seed = open_config(config), palette_lab(), shot_seed(0, 0)
    rows = []
    for rec in read_dataset(data, split)[shard[0]::shard[1]]:
        rgb, labels = load_record(data, rec)
        gt = rgb.astype(np.float64) * 255
        luma = rgb_to_luma(rgb)
        auto = ev.colorize(engine, luma, [], np.zeros((0, *luma.shape), bool), seed)
        picked = ev.object_regions(rec)
        for inst in picked[:objects]:
            m = labels == inst["id"]
            own = ev.colorize(engine, luma, [inst["text"]], m[None], seed)
            lab_own, lab_gt = (srgb_to_lab(x[m] / 255) for x in (own, gt))
            want = ev.counter_color(inst["lab"])
            far = ev.colorize(engine, luma, [f"a {want} {inst['object']}"], m[None], seed)
            rows.append({"name": rec["name"], "id": inst["id"],
                         "ciede2000_own": float(metrics.ciede2000(lab_own, lab_gt).mean()),
                         "bound": metrics.bound(far, m, tuple(pal[want])),
                         "band_leakage": metrics.delta_ab(auto, far, metrics.border_band(m)),
                         "far_leakage": metrics.delta_ab(auto, far, metrics.outside(m))})
    return {"config": config, "split": split, "shard": list(shard), "rows": rows}


def table(folder: Path) -> str:
    by: dict[str, list] = {}
    for f in sorted(folder.glob("ablation_*.json")):
        r = json.loads(f.read_text())
        by.setdefault(r["config"], []).extend(r["rows"])
    lines = ["| configuration | instances | binding | border-band leakage | CIEDE2000 inside, own colour text |",
             "| --- | --- | --- | --- | --- |"]
    for c in CONFIGS:
        rows = by.get(c)
        if rows:
            lines.append(f"| {c} | {len(rows)} | {np.mean([r['bound'] for r in rows]):.1%} | "
                         f"{np.mean([r['band_leakage'] for r in rows]):.3f} | "
                         f"{np.mean([r['ciede2000_own'] for r in rows]):.2f} |")
    return "\n".join(lines)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path, nargs="?")
    ap.add_argument("--split", default="val")
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--shard", type=int, nargs=2, default=(0, 1))
    ap.add_argument("--out", type=Path, default=Path("ablation"))
    ap.add_argument("--table", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    for c in a.configs.split(","):
        t = time.perf_counter()
        r = run(a.data, c, a.split, a.objects, tuple(a.shard))
        r["seconds"] = time.perf_counter() - t
        (a.out / f"ablation_{c}_{a.shard[0]}.json").write_text(json.dumps(r, indent=1))
        print(c, f"{r['seconds']:.0f} s", len(r["rows"]), "instances", flush=True)


if __name__ == "__main__":
    main()
