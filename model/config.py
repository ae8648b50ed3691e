"""The typed config tree of an agent, saved as `config.json` beside every checkpoint and exported bundle.

One tree, one override mechanism (`AgentConfig.override("projector.num_image_tokens=4", ...)`). This module
knows the shape of a configuration and how to read and write it; it builds nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class VisionConfig:
    """The image encoder: an open_clip model by name, or an inline open_clip architecture for small encoders.

    `pretrained` is an open_clip pretrained tag ("openai"), a local checkpoint path, or None (random init).
    `inline` is an open_clip CLIP config dict (`embed_dim`, `vision_cfg`, `text_cfg`) used instead of `model`.
    """

    model: str | None = "ViT-B-32"
    pretrained: str | None = None
    inline: dict[str, Any] | None = None
    image_size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ProjectorConfig:
    kind: str = "mlp2x_gelu"
    downsample: str = "pool"  # "pool" (adaptive average pool of the patch grid) or "pixel_shuffle"
    num_image_tokens: int = 16  # a square number; with pixel_shuffle, grid_side / sqrt(N) must be whole
    # "rms": RMS-normalise each image token, then a learned per-channel gain initialised at the RMS of the LM's
    # text embeddings, so image tokens start on the scale the LM reads (without it they drifted to ~10x text)
    output_norm: str = "rms"


@dataclass
class LMConfig:
    """The causal LM: an HF model id or local dir (`source`), a GGUF file in that dir, or an inline config.

    `inline` holds `transformers` config kwargs (with `model_type`) for tiny random models in tests.
    """

    source: str | None = None
    gguf_file: str | None = None
    inline: dict[str, Any] | None = None


@dataclass
class TokenConfig:
    init: str = "semantic"  # "semantic" (mean of name + description tokens), "mean" or "random"
    extra_descriptions: bool = True  # enrich from the Chinese description too


@dataclass
class AgentConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        return _from_dict(cls, data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def override(self, *assignments: str) -> AgentConfig:
        """A copy with dotted `section.key=value` assignments applied (values parsed as JSON when they can be)."""
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep:
                raise ValueError(f"override {assignment!r} is not of the form section.key=value")
            node = data
            *parents, leaf = key.strip().split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f"override {key!r}: no section {part!r}")
                node = node[part]
            if leaf not in node:
                raise ValueError(f"override {key!r}: unknown key {leaf!r}")
            try:
                node[leaf] = json.loads(raw)
            except json.JSONDecodeError:
                node[leaf] = raw
        return AgentConfig.from_dict(data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a dataclass from a dict, recursing into dataclass fields and failing loudly on unknown keys."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory if known[name].default_factory is not dataclasses.MISSING else None
        sub = type(default()) if default is not None else None
        if sub is not None and dataclasses.is_dataclass(sub) and isinstance(value, dict):
            kwargs[name] = _from_dict(sub, value)
        elif isinstance(value, list) and name in ("mean", "std"):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
