"""The projector: patch tokens on a square grid -> N image embeddings in the LM's embedding space.

Down-sampling to N tokens is either an adaptive average pool of the grid or a pixel shuffle (space to depth),
then `mlp2x_gelu` (Linear, GELU, Linear) as in LLaVA-1.5, then (by default) an RMS norm whose learned gain
starts at the RMS of the LM's text embeddings: image tokens enter the LM on the scale of the words it reads.
Knows only tensor shapes and that one scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from octopus.model.config import ProjectorConfig

DOWNSAMPLE_METHODS = ("pool", "pixel_shuffle")
PROJECTOR_KINDS = ("mlp2x_gelu",)
OUTPUT_NORMS = ("rms", "none")


class ScaledRMSNorm(nn.Module):
    """x / rms(x) * gain, written out (not nn.RMSNorm) so every ONNX opset exports it as plain ops."""

    def __init__(self, width: int, scale: float, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((width,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


class Projector(nn.Module):
    def __init__(self, config: ProjectorConfig, grid_tokens: int, vision_width: int, d_model: int,
                 text_rms: float = 1.0):
        super().__init__()
        if config.output_norm not in OUTPUT_NORMS:
            raise ValueError(f"unknown projector output_norm {config.output_norm!r}; choose one of {OUTPUT_NORMS}")
        if config.kind not in PROJECTOR_KINDS:
            raise ValueError(f"unknown projector kind {config.kind!r}; choose one of {PROJECTOR_KINDS}")
        if config.downsample not in DOWNSAMPLE_METHODS:
            raise ValueError(f"unknown downsample {config.downsample!r}; choose one of {DOWNSAMPLE_METHODS}")
        self.grid = math.isqrt(grid_tokens)
        self.side = math.isqrt(config.num_image_tokens)
        if self.side**2 != config.num_image_tokens:
            raise ValueError(f"projector.num_image_tokens={config.num_image_tokens} is not a square number")
        self.downsample = config.downsample
        # adaptive average pooling written as a fixed (S*S, G*G) matrix: the same numbers, and a plain MatMul
        # in ONNX (which cannot express adaptive pooling when S does not divide G, e.g. 7 -> 4)
        basis = torch.eye(self.grid * self.grid).reshape(-1, 1, self.grid, self.grid)  # (G*G, 1, G, G)
        pool = F.adaptive_avg_pool2d(basis, self.side).reshape(self.grid * self.grid, -1).T  # (S*S, G*G)
        self.register_buffer("pool", pool.contiguous(), persistent=False)
        in_width = vision_width
        if config.downsample == "pixel_shuffle":
            if self.grid % self.side:
                raise ValueError(f"pixel_shuffle needs grid side {self.grid} divisible by {self.side}")
            in_width = vision_width * (self.grid // self.side) ** 2
        self.mlp = nn.Sequential(nn.Linear(in_width, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.norm = ScaledRMSNorm(d_model, text_rms) if config.output_norm == "rms" else nn.Identity()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, t, c = patches.shape  # (B, T, C)
        if self.downsample == "pool":
            tokens = self.pool.to(patches.dtype) @ patches  # (S*S, G*G) @ (B, G*G, C) -> (B, S*S, C)
        else:
            grid = patches.transpose(1, 2).reshape(b, c, self.grid, self.grid)  # (B, C, G, G)
            f = self.grid // self.side
            grid = F.pixel_unshuffle(grid, f)  # (B, C*f*f, S, S)
            tokens = grid.flatten(2).transpose(1, 2)  # (B, S*S, C*f*f)
        return self.norm(self.mlp(tokens))  # (B, N, d_model)
