"""The image encoder: an open_clip image tower that returns patch tokens on a square grid.

Supported towers, chosen by exact class (never by name): open_clip's `VisionTransformer` (patch tokens
without the class token) and `TimmModel` (the trunk's feature map, flattened). Every source accepts a local
path: `pretrained` is an open_clip tag or a checkpoint file. The project's own CLIP configs (stage 0) live
in `clip_configs/` and are registered with open_clip on import. This module knows nothing about text.
"""

from __future__ import annotations

import math
from pathlib import Path

import open_clip
import torch
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer
from torch import nn

from octopus.model.config import VisionConfig

CLIP_CONFIG_DIR = Path(__file__).parent / "clip_configs"
open_clip.add_model_config(CLIP_CONFIG_DIR)


def build_clip(config: VisionConfig, load_pretrained: bool = True) -> nn.Module:
    """The whole open_clip model (image and text towers) for a vision config."""
    if config.inline is not None:
        return open_clip.CLIP(**config.inline)
    if config.model is None:
        raise ValueError("vision.model is not set and vision.inline is not given")
    pretrained = config.pretrained if load_pretrained else None
    return open_clip.create_model(config.model, pretrained=pretrained, device="cpu")


class VisionEncoder(nn.Module):
    """(B, 3, H, W) pixels -> (B, T, D) patch tokens, T a square number."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        if type(tower) not in (VisionTransformer, TimmModel):
            raise TypeError(f"unsupported open_clip image tower {type(tower).__name__}; "
                            "supported: VisionTransformer, TimmModel")
        self.tower = tower
        if isinstance(tower, VisionTransformer):
            tower.output_tokens = True

    @classmethod
    def from_config(cls, config: VisionConfig, load_pretrained: bool = True) -> VisionEncoder:
        return cls(build_clip(config, load_pretrained).visual)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if isinstance(self.tower, VisionTransformer):
            _, tokens = self.tower(pixels)  # (B, T, D)
            return tokens
        features = self.tower.trunk.forward_features(pixels)
        if features.ndim == 4:  # (B, C, H, W) from a CNN trunk
            return features.flatten(2).transpose(1, 2)  # (B, H*W, C)
        return features  # (B, T, D) from a transformer trunk

    @torch.no_grad()
    def output_shape(self, image_size: int) -> tuple[int, int]:
        """(tokens, width) this encoder produces for a square image of `image_size` pixels."""
        was_training = self.training
        self.eval()
        tokens = self(torch.zeros(1, 3, image_size, image_size))
        self.train(was_training)
        if math.isqrt(tokens.shape[1]) ** 2 != tokens.shape[1]:
            raise ValueError(f"encoder gives {tokens.shape[1]} tokens, not a square grid")
        return tokens.shape[1], tokens.shape[2]
