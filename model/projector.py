"""The projector: patch tokens on a square grid -> N image embeddings in the LM's embedding space.

Down-sampling to N tokens is either an adaptive average pool of the grid or a pixel shuffle (space to depth),
then `mlp2x_gelu` (Linear, GELU, Linear) as in LLaVA-1.5, then (by default) an RMS norm whose learned gain
starts at the RMS of the LM's text embeddings: image tokens enter the LM on the scale of the words it reads.
Optionally `NameSlots` append tokens that spell a text (the object's name or its category) chosen by the
object the image tokens read back as.
Knows only tensor shapes, that one scale and (for name slots) two tables it is given.
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


class NameSlots(nn.Module):
    """(B, N, D) image tokens -> (B, S, D): the row of `table` whose key is nearest (cosine) to the mean image token.

    `keys` (K, D) are unit vectors, one per nameable object; `table` (K, S, D) is what the slots show for each
    object, as the LM sees text (its own embeddings of the tokens of the object's name, or of its category's).
    `swappable` (S,) marks the slots that spell the object's own name, the ones training's name swap may show
    another object in (all of them when None). Both tables are derived from the LM's embeddings whenever the
    agent is built (buffers, not saved): nothing here trains. Exports as ArgMax + Gather.
    """

    def __init__(self, keys: torch.Tensor, table: torch.Tensor, swappable: torch.Tensor | None = None):
        super().__init__()
        if keys.ndim != 2 or table.ndim != 3 or len(keys) != len(table) or keys.shape[1] != table.shape[2]:
            raise ValueError(f"name slots need keys (K, D) and a table (K, S, D), got {tuple(keys.shape)} and "
                             f"{tuple(table.shape)}")
        swappable = torch.ones(table.shape[1], dtype=torch.bool) if swappable is None else swappable.bool()
        if swappable.shape != (table.shape[1],):
            raise ValueError(f"name slots' swappable mask must be ({table.shape[1]},), got {tuple(swappable.shape)}")
        self.register_buffer("keys", F.normalize(keys.float(), dim=-1), persistent=False)
        self.register_buffer("table", table.float(), persistent=False)
        self.register_buffer("swappable", swappable, persistent=False)

    @property
    def slots(self) -> int:
        return self.table.shape[1]

    def index(self, tokens: torch.Tensor, mirror: torch.Tensor | None = None,
              known: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) the object each row's image tokens read back as. `mirror` (B, N, D): the image tokens of each
        row's mirror image, read back together with the row's own (the sum of the two unit mean tokens).
        `known` (B,): the object another reader is sure of where >= 0 (`ClassNames`), which wins there."""
        mean = F.normalize(tokens.float().mean(1), dim=-1)  # (B, D)
        if mirror is not None:
            mean = mean + F.normalize(mirror.float().mean(1), dim=-1)  # argmax needs no second normalising
        index = (mean @ self.keys.T).argmax(-1)
        return index if known is None else torch.where(known >= 0, known.to(index.device), index)

    def forward(self, tokens: torch.Tensor, override: torch.Tensor | None = None,
                mirror: torch.Tensor | None = None, known: torch.Tensor | None = None) -> torch.Tensor:
        """`override` (B,): a row's name index to show instead of the read-back one where >= 0, in the
        swappable slots only (training's name swap, `StageConfig.name_swap`); never set at inference.
        `mirror`, `known`: as in `index`."""
        index = self.index(tokens, mirror, known)
        shown = self.table[index]  # (B, S, D)
        if override is not None:
            swapped = self.table[torch.where(override >= 0, override.to(index.device), index)]
            shown = torch.where(self.swappable[None, :, None], swapped, shown)
        return shown.to(tokens.dtype)


class ClassNames(nn.Module):
    """(B, T, C) trunk features -> (B,) the name a classifier of the pooled features is sure of, or -1.

    `weight` (M, C) and `bias` (M,) are a classifier over M classes on the mean of the T features (the packaged
    EfficientNet-Lite0's ImageNet head); `members` (M, K) marks the classes of each of the K names. A row reads
    as name k where the classes of k hold at least `threshold` of the softmax probability (of the image and its
    mirror together, averaged, when `mirror` is given). Buffers, not saved: built with the agent from the
    packaged weights. Exports as MatMul + Softmax + ReduceMax + Where.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, members: torch.Tensor, threshold: float):
        super().__init__()
        if weight.ndim != 2 or bias.shape != weight.shape[:1] or members.ndim != 2 or len(members) != len(weight):
            raise ValueError(f"class names need weight (M, C), bias (M,) and members (M, K), got "
                             f"{tuple(weight.shape)}, {tuple(bias.shape)} and {tuple(members.shape)}")
        if not 0 < threshold <= 1:
            raise ValueError(f"a class-name threshold is a probability in (0, 1], got {threshold}")
        self.register_buffer("weight", weight.float(), persistent=False)
        self.register_buffer("bias", bias.float(), persistent=False)
        self.register_buffer("members", members.float(), persistent=False)
        self.threshold = threshold

    def probabilities(self, patches: torch.Tensor, mirror: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M) the classifier's class probabilities (image and mirror averaged when `mirror` is given). The
        image and its mirror go through one product, so an export holds the classifier's weights once."""
        pooled = (patches if mirror is None else torch.cat([patches, mirror])).float().mean(1)  # (B or 2B, C)
        prob = (pooled @ self.weight.T + self.bias).softmax(-1)
        if mirror is None:
            return prob
        image, mirrored = prob.chunk(2)
        return (image + mirrored) / 2

    def forward(self, patches: torch.Tensor, mirror: torch.Tensor | None = None) -> torch.Tensor:
        best, index = (self.probabilities(patches, mirror) @ self.members).max(-1)  # (B,), (B,)
        return torch.where(best >= self.threshold, index, torch.full_like(index, -1))


class Projector(nn.Module):
    def __init__(self, config: ProjectorConfig, grid_tokens: int, vision_width: int, d_model: int,
                 text_rms: float = 1.0, names: NameSlots | None = None):
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
        self.grid_tokens = config.num_image_tokens  # the image tokens proper; name slots follow them
        self.names = names

    def forward(self, patches: torch.Tensor, name_index: torch.Tensor | None = None,
                mirror: torch.Tensor | None = None, known: torch.Tensor | None = None) -> torch.Tensor:
        """`mirror` (B, T, C): the patch features of each image's mirror image, for the name slots' read-back
        only (`ProjectorConfig.slot_flip`); the image tokens are the image's own. `known` (B,): as in
        `NameSlots.index` (`ProjectorConfig.slot_imagenet`)."""
        tokens = self.image_tokens(patches)  # (B, N, d_model)
        if self.names is None:
            return tokens
        mirrored = None if mirror is None else self.image_tokens(mirror)
        slots = self.names(tokens, name_index, mirrored, known)
        return torch.cat([tokens, slots], 1)  # (B, N + S, d_model): slots follow

    def image_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, T, C) patch features -> (B, N, d_model) image tokens proper, without the name slots."""
        b, t, c = patches.shape  # (B, T, C)
        if self.downsample == "pool":
            tokens = self.pool.to(patches.dtype) @ patches  # (S*S, G*G) @ (B, G*G, C) -> (B, S*S, C)
        else:
            grid = patches.transpose(1, 2).reshape(b, c, self.grid, self.grid)  # (B, C, G, G)
            f = self.grid // self.side
            grid = F.pixel_unshuffle(grid, f)  # (B, C*f*f, S, S)
            tokens = grid.flatten(2).transpose(1, 2)  # (B, S*S, C*f*f)
        return self.norm(self.mlp(tokens))  # (B, N, d_model)
