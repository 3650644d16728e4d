"""The sam2 backend end to end with a tiny random SAM2 video model (plumbing, not accuracy)."""

from __future__ import annotations

import pytest
from sam2_tiny import save_tiny_sam2

from restorer.models.tracking import InstancePrompts, Prompt, ShotPrompts, open_tracker, track_shot


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    """A random SAM2 video model, 64x64 input, saved with its processor like a real checkpoint."""
    return save_tiny_sam2(tmp_path_factory.mktemp("sam2"))


def _shot(scene):
    a, b = scene.masks(scene.start + 20)
    mid, late = scene.start + 20, scene.start + 40
    return ShotPrompts(scene.start, scene.end, (scene.h, scene.w), (
        InstancePrompts("disc", (Prompt(mid, box=(10, 10, 40, 40)),
                                 Prompt(late, points=((60, 30), (62, 32)),
                                        negative=((5, 5),)))),
        InstancePrompts("rect", (Prompt(mid, mask=b),)),
        InstancePrompts("sky", (Prompt(late, points=((80, 10),)),
                                Prompt(late + 3, box=(70, 0, 96, 20), points=((85, 5),)))),
        InstancePrompts("nothing", ()),
    ))


def test_sam2_tracks_a_shot_streaming_both_ways(tiny_sam2, scene, tmp_path, monkeypatch):
    tracker = open_tracker(None, tiny_sam2, device="cpu")
    assert tracker.name == "sam2"
    seen = []
    model_forward = tracker.model.forward

    def spy(session, *args, **kwargs):
        out = model_forward(session, *args, **kwargs)
        held = session.processed_frames or {}
        kept = [len(o["non_cond_frame_outputs"]) for o in session.output_dict_per_obj.values()]
        seen.append((kwargs.get("frame_idx"), kwargs.get("reverse", False), len(held),
                     max(kept), list(out.object_ids)))
        return out

    monkeypatch.setattr(tracker.model, "forward", spy)
    shot = _shot(scene)
    store = track_shot(tracker, shot, scene.read, tmp_path)

    assert store.complete
    for t in range(shot.start, shot.end + 1):
        m = store.get(t)
        assert m.shape == (4, scene.h, scene.w) and m.dtype == bool
        assert not m[3].any()  # an instance without prompts stays empty
    frames = [s[0] for s in seen]
    prompted = shot.prompt_frames
    assert frames[:len(prompted)] == prompted  # conditioning: each prompted frame alone
    forward = [s for s in seen[len(prompted):] if not s[1]]
    backward = [s for s in seen[len(prompted):] if s[1]]
    assert [s[0] for s in forward] == list(range(prompted[0], shot.end + 1))
    assert [s[0] for s in backward] == list(range(prompted[0] - 1, shot.start - 1, -1))
    assert all(s[2] <= 1 for s in seen)  # one frame's pixels held at a time
    assert max(s[3] for s in seen) <= 3 + 4 + 2  # per-frame memory stays in its window
    assert set(seen[-1][4]) == {1, 2, 3}  # object ids: instance index + 1
    # the frame source was read once for each prompt, once forwards, then backwards in chunks
    assert scene.reads[:len(prompted)] == [(f, f) for f in prompted]
    assert scene.reads[len(prompted)] == (prompted[0], shot.end)
    assert scene.reads[-1][0] == shot.start


def test_sam2_generates_masks_for_a_picture(tiny_sam2, scene, monkeypatch):
    tracker = open_tracker("sam2", tiny_sam2, device="cpu")
    scores = []
    forward = tracker.model.forward

    def spy(session, *args, **kwargs):
        out = forward(session, *args, **kwargs)
        scores.append([float(s) for s in out.object_score_logits.float().reshape(-1)])
        return out

    monkeypatch.setattr(tracker.model, "forward", spy)
    masks = tracker.generate_masks(scene.frame(scene.start), points_per_side=3, min_area=0.0)
    # one image encoding, one object per point of the 3x3 grid
    assert len(scores) == 1 and len(scores[0]) == 9
    present = sum(s > 0 for s in scores[0])
    assert present == 3  # this seeded random model scores 3 of the 9 present
    # "masks the model scores absent ... are dropped", even with no area floor: the 3 present
    # ones are left (none is a near-duplicate of another here), each non-empty, largest first
    assert len(masks) == present
    assert all(m.shape == (scene.h, scene.w) and m.dtype == bool and m.any() for m in masks)
    sizes = [int(m.sum()) for m in masks]
    assert sizes == sorted(sizes, reverse=True)
    for i, a in enumerate(masks):
        for b in masks[i + 1:]:
            assert (a & b).sum() / (a | b).sum() <= 0.7


def test_sam2_folder_with_another_model_is_a_weights_error(tmp_path):
    from restorer.errors import WeightsError

    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "processor_config.json").write_text("{}")
    with pytest.raises(WeightsError, match="cannot load SAM2"):
        open_tracker("sam2", tmp_path)
