"""The ``sam2`` tracker: transformers' SAM2 video model from a local folder, frames streamed.

How a shot is tracked (one inference session holds all of the shot's objects):

1. Conditioning: each prompted frame is read alone and every instance prompted there is
   registered on it (boxes, positive/negative points, masks), then the model runs on
   that frame. Each prompt becomes a conditioning memory of its object.
2. Forward sweep from the first prompted frame to the shot's end, one frame at a time.
   SAM2's memory attends to *all* conditioning frames, before and after, so a later
   prompt corrects the track as it is approached.
3. Backward sweep from the first prompted frame down to the shot's start, reading
   earlier frames again in chunks (never the whole shot).

Memory stays bounded: after each frame the session drops the frame's pixels and the
per-frame outputs older than the model's memory window (``num_maskmem`` frames and
``max_object_pointers_in_encoder`` object pointers); only the conditioning outputs,
one per prompt, are kept for the whole shot.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...devices import resolve_device
from ...errors import WeightsError
from .flow import read_backwards
from .prompts import FrameSource, Prompt, ShotPrompts, to_uint8
from .sam2_inputs import PROCESSOR_FILES, sam2_inputs
from .store import MaskStore

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def check_sam2_folder(folder: str | Path) -> Path:
    """Raise :class:`WeightsError` unless ``folder`` looks like a SAM2 video checkpoint."""
    folder = Path(folder)
    hint = "pass --sam2 DIR with a local transformers SAM2 checkpoint (e.g. a copy of " \
           "facebook/sam2.1-hiera-tiny), or use --tracker flow"
    if not folder.is_dir():
        raise WeightsError("SAM2 weights folder does not exist", path=folder, hint=hint)
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in _WEIGHT_FILES):
        missing.append("model.safetensors")
    if not any((folder / f).is_file() for f in PROCESSOR_FILES):
        missing.append("processor_config.json or preprocessor_config.json")
    if missing:
        raise WeightsError(f"not a SAM2 weights folder ({', '.join(missing)} missing)",
                           path=folder, hint=hint)
    return folder


class Sam2Tracker:
    """SAM2 video tracking; build with :meth:`from_pretrained`."""

    name = "sam2"

    def __init__(self, model, processor, device: str = "cpu", source: str = ""):
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.source = source

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | None = None) -> "Sam2Tracker":
        """Load model and processor from ``folder`` (never from the network).

        Raises:
            WeightsError: the folder is missing, incomplete, or holds another model.
        """
        folder = check_sam2_folder(folder)
        from transformers import Sam2VideoModel

        from ..strict import from_pretrained_strict

        device = resolve_device(device)
        # a missing, unexpected or mis-shaped tensor is refused too, naming the first keys
        model = from_pretrained_strict(Sam2VideoModel, folder, "SAM2 weights")
        try:
            processor = sam2_inputs(folder, model.config.image_size)
        except Exception as exc:  # noqa: BLE001 - any failure here means unusable weights
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"cannot load SAM2 from it: {first}", path=folder,
                               hint="pass --sam2 DIR with a transformers SAM2 video "
                                    "checkpoint") from exc
        return cls(model.to(device), processor, device, source=str(folder))

    def fingerprint(self) -> str:
        cfg = self.model.config
        return f"sam2-1-{self.source}-{cfg.num_maskmem}-{cfg.image_size}"

    # -- plumbing ----------------------------------------------------------------------

    def _pixels(self, luma: np.ndarray):
        return self.processor.pixels(to_uint8(luma), self.device, self.model.dtype)

    def _register(self, session, shot: ShotPrompts, frame: int) -> None:
        """Add every prompt on ``frame`` to the session, grouped by kind, one call per kind."""
        groups: dict[str, list[tuple[int, Prompt]]] = {"mask": [], "box": [], "points": []}
        for i, inst in enumerate(shot.instances):
            for p in inst.prompts:
                if p.frame == frame:
                    kind = "mask" if p.mask is not None else "box" if p.box is not None else "points"
                    groups[kind].append((i + 1, p))
        add = self.processor.add_inputs_to_inference_session
        new: list[int] = []
        if groups["mask"]:
            ids = [i for i, _ in groups["mask"]]
            add(session, frame_idx=frame, obj_ids=ids,
                input_masks=[p.mask.astype(bool) for _, p in groups["mask"]])
            new += ids
        for i, p in groups["box"]:  # a box and its points must be one object's call
            points, labels = _points(p)
            add(session, frame_idx=frame, obj_ids=[i], input_boxes=[[list(p.box)]],
                input_points=[[points]] if points else None,
                input_labels=[[labels]] if points else None, original_size=shot.size)
            new.append(i)
        if groups["points"]:
            ids = [i for i, _ in groups["points"]]
            pts = [_points(p) for _, p in groups["points"]]
            add(session, frame_idx=frame, obj_ids=ids, input_points=[[q for q, _ in pts]],
                input_labels=[[lab for _, lab in pts]], original_size=shot.size)
            new += ids
        # each processor call replaces the list of objects with new inputs; all of them
        # must run on this frame
        session.obj_with_new_inputs = list(dict.fromkeys(new))

    def _masks(self, out, shot: ShotPrompts) -> np.ndarray:
        """The model's output as (N, H, W) bool in instance order; absent objects empty."""
        import torch

        n = len(shot.instances)
        masks = np.zeros((n, *shot.size), bool)
        logits = out.pred_masks.float().cpu()
        full = self.processor.post_process_masks([logits], original_sizes=[list(shot.size)],
                                                 binarize=True)[0][:, 0]
        present = (out.object_score_logits.float().cpu().reshape(-1) > 0)
        for k, obj_id in enumerate(out.object_ids):
            if bool(present[k]):
                masks[obj_id - 1] = full[k].numpy() if isinstance(full, torch.Tensor) else full[k]
        return masks

    def _forget(self, session, t: int, reverse: bool) -> None:
        """Drop what the model will not look at again: pixels and old per-frame outputs."""
        cfg = self.model.config
        keep = max(cfg.num_maskmem, cfg.max_object_pointers_in_encoder) + 1
        session.processed_frames = {}
        for outputs in session.output_dict_per_obj.values():
            frames = outputs["non_cond_frame_outputs"]
            for f in [f for f in frames if (f > t + keep if reverse else f < t - keep)]:
                del frames[f]

    def _reset_tracking(self, session) -> None:
        for outputs in session.output_dict_per_obj.values():
            outputs["non_cond_frame_outputs"].clear()
        for tracked in session.frames_tracked_per_obj.values():
            tracked.clear()
        session.processed_frames = {}

    # -- tracking ----------------------------------------------------------------------

    def track(self, shot: ShotPrompts, read: FrameSource, store: MaskStore) -> None:
        """Fill ``store`` with every frame of the shot (see the module docstring)."""
        import torch

        prompted = shot.prompt_frames
        if not prompted:
            for t in range(shot.start, shot.end + 1):
                store.put(t, np.zeros((len(shot.instances), *shot.size), bool))
            return
        session = self.processor.init_video_session(inference_device=self.device,
                                                    dtype=self.model.dtype)
        with torch.inference_mode():
            for f in prompted:
                (_, luma), = list(read(f, f))
                self._register(session, shot, f)
                self.model(session, frame=self._pixels(luma), frame_idx=f)
                session.processed_frames = {}
            self._reset_tracking(session)
            self._sweep(session, shot, read(prompted[0], shot.end), store, reverse=False)
            if prompted[0] > shot.start:
                self._reset_tracking(session)
                back = read_backwards(read, shot.start, prompted[0] - 1, shot.size, 64 << 20)
                self._sweep(session, shot, back, store, reverse=True)

    def _sweep(self, session, shot, frames, store: MaskStore, reverse: bool) -> None:
        for t, luma in frames:
            out = self.model(session, frame=self._pixels(luma), frame_idx=t, reverse=reverse)
            store.put(t, self._masks(out, shot))
            self._forget(session, t, reverse)

    # -- automatic masks (dataset builder) ---------------------------------------------

    def generate_masks(self, luma: np.ndarray, points_per_side: int = 16,
                       min_area: float = 0.001, max_overlap: float = 0.7) -> list[np.ndarray]:
        """Masks of whatever SAM2 finds in one picture, prompted by a grid of points.

        Each grid point is one object of a one-frame session (one image encoding);
        masks the model scores absent, tiny ones and near-duplicates (IoU above
        ``max_overlap`` with a larger kept mask) are dropped. Largest first.
        """
        import torch

        h, w = luma.shape[:2]
        step_y, step_x = h / points_per_side, w / points_per_side
        grid = [[(x + 0.5) * step_x, (y + 0.5) * step_y]
                for y in range(points_per_side) for x in range(points_per_side)]
        session = self.processor.init_video_session(inference_device=self.device,
                                                    dtype=self.model.dtype)
        ids = list(range(1, len(grid) + 1))  # a copy goes in: the session empties its list
        self.processor.add_inputs_to_inference_session(
            session, frame_idx=0, obj_ids=list(ids), input_points=[[[p] for p in grid]],
            input_labels=[[[1] for _ in grid]], original_size=(h, w))
        with torch.inference_mode():
            out = self.model(session, frame=self._pixels(luma), frame_idx=0,
                             run_mem_encoder=False)
        fake = ShotPrompts(0, 0, (h, w), tuple(
            _bare(str(i)) for i in ids))
        masks = [m for m in self._masks(out, fake) if m.any() and m.sum() >= min_area * h * w]
        return _dedupe(sorted(masks, key=lambda m: -int(m.sum())), max_overlap)


def _points(p: Prompt) -> tuple[list[list[float]], list[int]]:
    points = [list(q) for q in p.points] + [list(q) for q in p.negative]
    labels = [1] * len(p.points) + [0] * len(p.negative)
    return points, labels


def _bare(name: str):
    from .prompts import InstancePrompts

    return InstancePrompts(name=name, prompts=())


def _dedupe(masks: list[np.ndarray], max_overlap: float) -> list[np.ndarray]:
    kept: list[np.ndarray] = []
    for m in masks:
        if all((m & k).sum() / max(1, (m | k).sum()) <= max_overlap for k in kept):
            kept.append(m)
    return kept
