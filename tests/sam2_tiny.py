"""A tiny random SAM2 video model saved like a real checkpoint (the sam2 tracker's and dataset builder's tests)."""

from __future__ import annotations

import json
from pathlib import Path


def save_tiny_sam2(folder: Path, side: int = 64) -> Path:
    """Write a random SAM2 video model with ``side`` x ``side`` input and its processor into ``folder``."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    torch.set_num_threads(1)
    dim = 128  # the memory encoder's 64 channels are fixed upstream; dim > 64
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
    Sam2VideoModel(config).save_pretrained(folder)
    # the processor file as upstream's Sam2VideoProcessor.save_pretrained writes it (its
    # image processor imports torchvision, which the tracker does without)
    image = {"image_processor_type": "Sam2ImageProcessorFast", "size": {"height": side, "width": side},
             "mask_size": {"height": side // 4, "width": side // 4},
             "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "processor_config.json").write_text(json.dumps(
        {"processor_class": "Sam2VideoProcessor", "image_processor": image,
         "video_processor": {**image, "video_processor_type": "Sam2VideoVideoProcessor"}}))
    return folder
