"""The sam2 backend end to end with a tiny random SAM2 video model (plumbing, not accuracy)."""

from __future__ import annotations

import pytest

from restorer.models.tracking import InstancePrompts, Prompt, ShotPrompts, open_tracker, track_shot

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    """A random SAM2 video model, 64x64 input, saved with its processor like a real checkpoint."""
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    torch.set_num_threads(1)
    side, dim = 64, 128  # the memory encoder's 64 channels are fixed upstream; dim > 64
    backbone = dict(model_type="sam2_hiera_det_model", image_size=[side, side], hidden_size=8,
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                    num_attention_heads_per_stage=[1, 1, 1, 1],
                    window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3],
                    window_positional_embedding_background_size=[2, 2])
    config = Sam2VideoConfig(
        vision_config=dict(model_type="sam2_vision_model", backbone_config=backbone,
                           backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=dim,
                           backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2,
                                                   [side // 16] * 2]),
        prompt_encoder_config=dict(hidden_size=dim, image_size=side, patch_size=16,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=dim, mlp_dim=32, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
        image_size=side, memory_attention_hidden_size=dim, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[side // 16] * 2, memory_encoder_hidden_size=dim,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=dim,
        memory_fuser_embed_dim=dim, memory_fuser_intermediate_dim=32, num_maskmem=3,
        max_object_pointers_in_encoder=4)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sam2")
    Sam2VideoModel(config).save_pretrained(folder)
    Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size={"height": side, "width": side},
                                           mask_size={"height": side // 4, "width": side // 4}),
        video_processor=Sam2VideoVideoProcessor(size={"height": side, "width": side}),
    ).save_pretrained(folder)
    return folder


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


def test_sam2_generates_masks_for_a_picture(tiny_sam2, scene):
    tracker = open_tracker("sam2", tiny_sam2, device="cpu")
    masks = tracker.generate_masks(scene.frame(scene.start), points_per_side=3, min_area=0.0)
    assert all(m.shape == (scene.h, scene.w) and m.dtype == bool for m in masks)


def test_sam2_folder_with_another_model_is_a_weights_error(tmp_path):
    from restorer.errors import WeightsError

    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "processor_config.json").write_text("{}")
    with pytest.raises(WeightsError, match="cannot load SAM2"):
        open_tracker("sam2", tmp_path)
