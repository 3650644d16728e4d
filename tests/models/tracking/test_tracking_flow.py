"""The flow and static trackers on generated shapes."""

from __future__ import annotations

import numpy as np
import pytest

from restorer.models.tracking import InstancePrompts, Prompt, ShotPrompts, open_tracker, track_shot


@pytest.fixture(autouse=True)
def _one_thread():
    import cv2

    cv2.setNumThreads(1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _shot(scene, prompts_at, box=False):
    insts = []
    for i, name in enumerate(("disc", "rect")):
        prompts = []
        for f in prompts_at:
            m = scene.masks(f)[i]
            if box:
                ys, xs = np.nonzero(m)
                prompts.append(Prompt(f, box=(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)))
            else:
                prompts.append(Prompt(f, mask=m))
        insts.append(InstancePrompts(name, tuple(prompts)))
    return ShotPrompts(scene.start, scene.end, (scene.h, scene.w), tuple(insts))


def _ious(scene, store):
    return np.array([[iou(store.get(t)[i], scene.masks(t)[i]) for i in range(2)]
                     for t in range(scene.start, scene.end + 1)])


def test_flow_follows_moving_scaling_crossing_shapes_both_ways(scene, tmp_path):
    mid = scene.start + 24
    store = track_shot(open_tracker("flow"), _shot(scene, [mid]), scene.read, tmp_path)
    ious = _ious(scene, store)
    back, fwd = ious[:24], ious[25:]
    assert back.mean() >= 0.9, back.mean(axis=0)  # through the crossing
    assert fwd.mean() >= 0.9, fwd.mean(axis=0)  # moving apart, the disc growing
    assert ious.mean(axis=0).min() >= 0.9, ious.mean(axis=0)
    assert ious[24].min() == 1.0  # the prompted frame is the prompt


def test_flow_reads_backwards_in_chunks_without_holding_the_shot(scene, tmp_path):
    from restorer.models.tracking.flow import FlowSettings, FlowTracker

    tracker = FlowTracker(FlowSettings(chunk_bytes=10 * scene.h * scene.w * 2))
    track_shot(tracker, _shot(scene, [scene.start + 30]), scene.read, tmp_path)
    forward, *chunks = scene.reads
    assert forward == (scene.start + 30, scene.end)
    assert all(hi - lo + 1 <= 10 for lo, hi in chunks)
    assert chunks[0][1] == scene.start + 30 and chunks[-1][0] == scene.start


def test_flow_reanchors_on_every_prompt_and_takes_the_nearest(scene, tmp_path):
    frames = [scene.start + 5, scene.start + 40]
    store = track_shot(open_tracker("flow"), _shot(scene, frames), scene.read, tmp_path)
    for f in frames:
        assert np.array_equal(store.get(f), scene.masks(f))
    assert _ious(scene, store).mean() >= 0.9


def test_static_keeps_the_latest_prompt_region(scene, tmp_path):
    frames = [scene.start + 10, scene.start + 30]
    shot = _shot(scene, frames, box=True)
    store = track_shot(open_tracker("static"), shot, scene.read, tmp_path)
    assert scene.reads == []  # static decodes nothing
    first = store.get(scene.start + 10)
    assert np.array_equal(store.get(scene.start), first)
    assert np.array_equal(store.get(scene.start + 29), first)
    later = store.get(scene.start + 30)
    assert np.array_equal(store.get(scene.end), later) and not np.array_equal(first, later)
    ys, xs = np.nonzero(first[0])  # a box is its filled rectangle
    assert first[0][ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()


def test_complete_store_is_reused_and_other_prompts_retrack(scene, tmp_path):
    shot = _shot(scene, [scene.start + 24])
    track_shot(open_tracker("flow"), shot, scene.read, tmp_path)
    n = len(scene.reads)
    again = track_shot(open_tracker("flow"), shot, scene.read, tmp_path)
    assert len(scene.reads) == n and again.complete  # resumed: nothing decoded
    track_shot(open_tracker("flow"), _shot(scene, [scene.start + 20]), scene.read, tmp_path)
    assert len(scene.reads) > n


def test_instance_without_prompts_is_empty(scene, tmp_path):
    shot = _shot(scene, [scene.start + 24])
    shot = ShotPrompts(shot.start, shot.end, shot.size,
                       shot.instances + (InstancePrompts("ghost", ()),))
    store = track_shot(open_tracker("flow"), shot, scene.read, tmp_path)
    assert all(not store.get(t)[2].any() for t in range(shot.start, shot.end + 1))
