"""The temporal stage against the per-frame path, side by side in one run.

Run: python bench/bench_temporal.py [--clip PATH] [--frames 120] [--presets stencil tiny] [--interval 24]
                                    [--threads 2] [--size WxH] [--instances N] [--off-frames K]
                                    [--sheet PNG] [--ablate]

``--size`` rescales the clip first (640x360: the speed targets). ``--instances N`` gives tiny N boxed
instance texts at frame 0, tracked by the flow tracker. ``--off-frames K`` times the per-frame path on
the first K frames only (it costs seconds a frame with instance texts); its quality columns are then
those K frames'. ``--sheet`` writes a contact sheet: every 20th frame, truth / per-frame / propagated.
``--ablate`` adds propagation runs without keyframe reconciliation and without the cheap fill.

The clip's own colours are the ground truth: each preset colours the clip's luma with ``temporal="off"``
(every frame by the engine) and ``temporal="propagate"`` (the engine on keyframes, optical flow between
them), and the films are scored with the metrics of ``restorer eval`` (``evaluate_paths``): colour
distribution consistency (CDC; with the truth's shot cuts also CDC within shots) and warp error, with the
clip's own values beside them, colourfulness,
frames per second, keyframes and the share of pixels carried by the flow. The stencil preset colours a
face box (tracked by the flow tracker) on a sepia background; tiny colours automatically (no shots file).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIP = ROOT.parent / "shared" / "data" / "video" / "carphone_pristine.mp4"
FACE_BOX = (54.0, 30.0, 106.0, 98.0)  # carphone, frame 60 (as bench_tracking.py)
SHOTS = """\
version: 1
shots:
  - frames: [0, {last}]
    prompt: "sepia"
    instances:
      - name: face
        text: "an orange face"
        prompts:
          - frame: 60
            box: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]
"""


def trim(src: Path, dst: Path, frames: int, size: tuple[int, int] | None = None) -> Path:
    """The first ``frames`` frames of ``src`` as a lossless (ffv1, yuv444p) film, rescaled to ``size`` (w, h)."""
    from fractions import Fraction

    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        rate = Fraction(stream.average_rate)
        video = out.add_stream("ffv1", rate=rate)
        w, h = size or (stream.width, stream.height)
        video.width, video.height, video.pix_fmt = w, h, "yuv444p"
        video.time_base = video.codec_context.time_base = 1 / rate
        for i, frame in enumerate(inp.decode(stream)):
            if i >= frames:
                break
            if size is not None:
                frame = frame.reformat(width=w, height=h, interpolation="AREA")
            new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv444p"), format="yuv444p")
            new.pts, new.time_base = i, 1 / rate
            out.mux(video.encode(new))
        out.mux(video.encode(None))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--presets", nargs="+", default=["stencil", "tiny"])
    ap.add_argument("--interval", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--size", default=None, help="rescale the clip to WxH first")
    ap.add_argument("--instances", type=int, default=0, help="tiny gets this many boxed instance texts")
    ap.add_argument("--off-frames", type=int, default=None, help="time the per-frame path on this many frames")
    ap.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG")
    ap.add_argument("--ablate", action="store_true", help="also propagate without reconciliation / fill")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None

    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    from restorer.pipelines.evaluate import evaluate_paths
    from restorer.pipelines.options import ColorizeOptions
    from restorer.pipelines.run import colorize_run
    from restorer.pipelines.temporal import Propagator
    from restorer.pipelines.video import VideoColorizationPipeline

    # keep each run's VideoResult (run.py's report does not carry the temporal fields yet)
    results = []
    call = VideoColorizationPipeline.__call__

    def spy(self, *a, **k):
        results.append(call(self, *a, **k))
        return results[-1]

    VideoColorizationPipeline.__call__ = spy
    # time the optical flow by who asks for it: the flow tracker works at up to 640 px, the temporal stage
    # at up to 512 px (TemporalSettings.work_side), so the working size tells them apart
    from restorer.models.tracking import flow as flow_module

    flow_time: dict = {}
    pair = flow_module._Flow.pair

    def timed_pair(self, a, b):
        t0 = time.perf_counter()
        out = pair(self, a, b)
        spent = flow_time.setdefault(self.work, [0.0, 0])
        spent[0] += time.perf_counter() - t0
        spent[1] += 1
        return out

    flow_module._Flow.pair = timed_pair
    assert Propagator  # the stage under test
    import restorer.pipelines.temporal as temporal_module

    plain = temporal_module.TemporalSettings
    variants = [("off", {}), ("propagate", {})]
    if args.ablate:
        variants += [("propagate, no reconcile", {"reconcile": 0}), ("propagate, no fill", {"fill_share": 1.0})]
    rows, films = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gt = trim(args.clip, tmp / "gt.mkv", args.frames, size)
        gt_off = trim(args.clip, tmp / "gt_off.mkv", args.off_frames, size) if args.off_frames else gt
        films["truth"] = gt
        (tmp / "face.yaml").write_text(SHOTS.format(last=args.frames - 1, b=FACE_BOX), encoding="utf-8")
        boxed = tmp / "boxes.yaml"
        if args.instances:
            boxed.write_text(instance_shots(args.instances, size or _size(gt)), encoding="utf-8")
        for preset in args.presets:
            for temporal, knobs in variants:
                out = tmp / f"{preset}_{len(rows)}.mkv"
                shots = tmp / "face.yaml" if preset == "stencil" else (boxed if args.instances else None)
                opts = ColorizeOptions(preset=preset, temporal=temporal.split(",")[0],
                                       keyframe_interval=args.interval, quiet=True, codec="ffv1",
                                       threads=args.threads, shots=shots, tracker="flow" if shots else None)
                source = gt_off if temporal == "off" else gt
                temporal_module.TemporalSettings = functools.partial(plain, **knobs)
                t0 = time.perf_counter()
                try:
                    colorize_run([source], out, opts)
                finally:
                    temporal_module.TemporalSettings = plain
                seconds = time.perf_counter() - t0
                r = results[-1]
                m = evaluate_paths(out, source)
                films[(preset, temporal)] = out
                keys = sum(len(v) for v in r.keyframes.values())
                flows = {f"{w}x{h}": [round(t, 2), n] for (w, h), (t, n) in flow_time.items()}
                flow_time.clear()
                rows.append({"preset": preset, "temporal": temporal, "frames": r.frames, "seconds": seconds,
                             "flow_seconds_by_working_size": flows,
                             "fps": r.frames / seconds, "keyframes": keys if temporal != "off" else r.frames,
                             "propagated_share": r.propagated_share, "cdc": m["cdc_pred"], "cdc_gt": m["cdc_gt"],
                             "cuts": m.get("cuts", []), "cdc_within_shots": m.get("cdc_within_shots_pred"),
                             "cdc_within_shots_gt": m.get("cdc_within_shots_gt"),
                             "warp_error": m["warp_error_pred"], "warp_error_gt": m["warp_error_gt"],
                             "colourfulness": m.get("colourfulness_pred"),
                             "colourfulness_gt": m.get("colourfulness_gt"),
                             "psnr": m.get("psnr"), "ciede2000": m.get("ciede2000")})
                print(json.dumps(rows[-1]), flush=True)
        if args.sheet:
            write_sheet(args.sheet, films, args.presets, args.frames, args.off_frames)
    print(f"\n{args.clip.name}, first {args.frames} frames{f' at {args.size}' if size else ''}, "
          f"keyframe interval {args.interval}, {args.threads} threads, {args.instances} instance texts; "
          f"command: python bench/bench_temporal.py {' '.join(sys.argv[1:])}")
    print("| preset | temporal | frames | fps | keyframes | propagated | CDC / clip's own | warp error / clip's own "
          "| colourfulness / clip's | PSNR | CIEDE2000 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        colour = (r["colourfulness"] or 0) / max(r["colourfulness_gt"] or 0, 1e-12)
        print(f"| {r['preset']} | {r['temporal']} | {r['frames']} | {r['fps']:.2f} | {r['keyframes']} | "
              f"{r['propagated_share']:.2f} | {r['cdc']:.5f} / {r['cdc_gt']:.5f} = {r['cdc'] / r['cdc_gt']:.2f}x | "
              f"{r['warp_error']:.5f} / {r['warp_error_gt']:.5f} = {r['warp_error'] / r['warp_error_gt']:.2f}x | "
              f"{colour:.2f} | {_f(r['psnr'])} | {_f(r['ciede2000'])} |")
    for r in rows:
        if r["cuts"]:  # across a cut the histogram changes with the content: CDC within the shots apart
            print(f"{r['preset']} {r['temporal']}: cuts at {r['cuts']}; CDC within shots {r['cdc_within_shots']:.5f} / "
                  f"{r['cdc_within_shots_gt']:.5f} = {r['cdc_within_shots'] / r['cdc_within_shots_gt']:.2f}x")
    by = {(r["preset"], r["temporal"]): r for r in rows}
    for preset in args.presets:
        off, prop = by[(preset, "off")], by[(preset, "propagate")]
        print(f"{preset}: propagate/off speed {prop['fps'] / off['fps']:.2f}x, "
              f"CDC {prop['cdc'] / max(off['cdc'], 1e-12):.2f}x, "
              f"warp error {prop['warp_error'] / max(off['warp_error'], 1e-12):.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _size(film: Path) -> tuple[int, int]:
    import av

    with av.open(str(film)) as c:
        s = c.streams.video[0]
        return s.width, s.height


def instance_shots(n: int, size: tuple[int, int]) -> str:
    """``n`` boxed instances at frame 0, side by side across the middle of a (w, h) frame."""
    w, h = size
    texts = ["a red coat", "a blue car", "a green door", "a yellow hat", "an orange sign"]
    lines = ["version: 1", "shots:", "  - instances:"]
    for i in range(n):
        x0, x1 = w * (0.05 + 0.9 * i / n), w * (0.05 + 0.9 * (i + 0.8) / n)
        lines += [f"      - name: object{i + 1}", f"        text: \"{texts[i % len(texts)]}\"",
                  "        prompts:", "          - frame: 0",
                  f"            box: [{x0:.0f}, {h * 0.3:.0f}, {x1:.0f}, {h * 0.75:.0f}]"]
    return "\n".join(lines) + "\n"


def write_sheet(path: Path, films: dict, presets: list[str], frames: int, off_frames: int | None) -> None:
    """Every 20th frame: the clip's own colours, then per preset the per-frame path and the propagated one."""
    import av
    import cv2

    from restorer.models.tracking.preview import contact_sheet

    def read(film: Path, wanted: set[int]) -> dict[int, np.ndarray]:
        got = {}
        with av.open(str(film)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i in wanted:
                    got[i] = f.to_ndarray(format="rgb24")
        return got

    picks = list(range(0, frames, 20))
    columns = [("truth", films["truth"])]
    for preset in presets:
        columns += [(f"{preset} {t}", films[(preset, t)]) for t in ("off", "propagate") if (preset, t) in films]
    decoded = {label: read(film, set(picks)) for label, film in columns}
    images, labels = [], []
    for i in picks:
        for label, _film in columns:
            im = decoded[label].get(i)
            if im is None:  # the per-frame path timed on fewer frames
                im = np.zeros_like(decoded["truth"][i])
            scale = 320 / max(im.shape[:2])
            images.append(cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
            labels.append(f"{label} #{i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(images, labels, columns=len(columns)), cv2.COLOR_RGB2BGR))
    print(f"contact sheet: {path}")


if __name__ == "__main__":
    main()
