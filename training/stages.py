"""Stages are data: each declares what trains (frozen / full / lora per component), its data and its
hyper-parameters. Profiles (`tiny`, `quick`, `full`) name an agent config and a list of stages.

The runner (`octopus.training.loop`) applies `train` to the model, asserts that exactly the declared
components have trainable parameters, and logs the counts. This module only describes; it trains nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from octopus.model.config import AgentConfig
from octopus.model.presets import preset
from octopus.training.clip import ClipStageConfig

COMPONENTS = ("vision_encoder", "projector", "lm")
TRAIN_MODES = ("frozen", "full", "lora")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")  # as Octopus v2


@dataclass
class StageConfig:
    name: str
    kind: str  # "alignment" (captions, loss on caption tokens) or "functional" (calls, loss on the target)
    train: dict[str, str]  # component -> frozen | full | lora
    data: str  # file in the data dir: captions.csv or train.jsonl
    max_examples: int | None = None  # a balanced, seeded subset; None: all
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    schedule: str = "linear"  # linear | cosine | constant
    max_length: int = 128
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: tuple[str, ...] = LORA_TARGETS
    lora_dropout: float = 0.05
    lora_layers: int | None = None  # LoRA on the top N decoder layers only; None: all. Set, the layers below run
    # without grad and backward stops at the lowest adapted layer (the new token rows then learn through the
    # tied output layer only). Measured on the quick profile: 15 of 30 layers ran a step 1.3x faster, but with
    # 4,500 examples in the same time as 3,000 on all layers the agent read images worse (teacher-forced,
    # 1,000 test rows: image-decided held-out 66% vs 71%, trained objects 71% vs 78%, swap follow 65% vs 71%)
    function_token_weight: float = 1.0  # >1 weighs the loss on functional tokens up
    kind_shares: dict[str, float] | None = None  # share of each request kind in the subset (functional stages)
    lm_loss_weight: float = 1.0  # 0: no LM forward; the projector learns from the grounding loss alone
    grounding_loss_weight: float = 0.0  # which object / category the mean image token shows (loop.GroundingHeads)
    save_every: int = 50  # optimizer steps between checkpoints
    log_every: int = 5
    precision: str = "auto"  # "auto": bf16 where the hardware runs it fast (GPU, CPU with AMX/avx512_bf16), else fp32;
    # "bf16" or "no" force it (on an AVX2-only CPU, bf16 autocast measured 7x slower than fp32)
    seed: int = 0

    def __post_init__(self):
        if set(self.train) != set(COMPONENTS):
            raise ValueError(f"stage {self.name}: train must name exactly {COMPONENTS}, got {sorted(self.train)}")
        bad = {c: m for c, m in self.train.items() if m not in TRAIN_MODES}
        if bad:
            raise ValueError(f"stage {self.name}: unknown train modes {bad}; choose from {TRAIN_MODES}")
        if self.train["vision_encoder"] == "lora" or self.train["projector"] == "lora":
            raise ValueError(f"stage {self.name}: lora is supported for the lm only")
        if self.lora_layers is not None and (self.train["lm"] != "lora" or self.lora_layers < 1):
            raise ValueError(f"stage {self.name}: lora_layers needs lm=lora and a count >= 1, got {self.lora_layers}")
        if self.lora_layers is not None and self.train["projector"] != "frozen":
            raise ValueError(f"stage {self.name}: lora_layers runs the layers below without grad, so the "
                             "projector must be frozen")

    def override(self, key: str, raw: str) -> StageConfig:
        """A copy with one hyper-parameter set from text (parsed as JSON when it can be), e.g. `lr`, `1e-3`."""
        known = {f.name for f in fields(self)}
        if key not in known:
            raise ValueError(f"override {self.name}.{key}: unknown key; choose from {', '.join(sorted(known))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        data = self.to_dict()
        data[key] = tuple(value) if key == "lora_targets" else value
        return StageConfig(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Profile:
    name: str
    agent: AgentConfig
    clip: ClipStageConfig | None  # None: a pretrained CLIP is configured, stage 0 is skipped
    stages: list[StageConfig] = field(default_factory=list)
    data_n_per_function: int = 1000  # what `make demo`/`train all` builds when no data dir exists


# stage 2's request kinds: the text alone decides 40% of the data but only the image decides the hard cases
GROUNDING_MIX = {"text": 0.3, "image": 0.25, "ambiguous": 0.35, "irrelevant": 0.1}


def _alignment(**kw) -> StageConfig:
    base = dict(name="stage1_alignment", kind="alignment", data="captions.csv", lr=1e-3, warmup_ratio=0.03,
                train={"vision_encoder": "frozen", "projector": "full", "lm": "frozen"})
    return StageConfig(**{**base, **kw})


def _functional(**kw) -> StageConfig:
    base = dict(name="stage2_functional", kind="functional", data="train.jsonl", lr=5e-5,
                train={"vision_encoder": "frozen", "projector": "full", "lm": "lora"})
    return StageConfig(**{**base, **kw})


def profile(name: str) -> Profile:
    """The named profile; every default is sized for a 2-core CPU except `full`."""
    if name == "tiny":  # seconds per stage: CI proves the whole chain runs
        agent = preset("tiny")
        agent.vision.model, agent.vision.inline = "octopus-tiny-vit", None
        clip = ClipStageConfig(model="octopus-tiny-vit", method="open_clip_train", imagenet_init=False, epochs=1,
                               batch_size=32, warmup=2,
                               lock_image=False, precision="fp32", image_mean=agent.vision.mean,
                               image_std=agent.vision.std)
        stages = [_alignment(data="naming.jsonl", max_examples=64, batch_size=8, max_length=64, save_every=4,
                             precision="no", grounding_loss_weight=0.5),
                  _functional(max_examples=96, batch_size=8, max_length=96, lr=2e-3, save_every=4, precision="no",
                              grounding_loss_weight=0.5, kind_shares=GROUNDING_MIX)]
        return Profile(name, agent, clip, stages, data_n_per_function=10)
    if name == "quick":  # SmolLM2-135M + the ImageNet EfficientNet-Lite0 trunk, under 30 minutes on 2 cores
        stages = [_alignment(data="naming.jsonl", batch_size=64, max_length=40, epochs=20.0, lr=1e-3,
                             lm_loss_weight=0.0, grounding_loss_weight=1.0, save_every=200),
                  # projector frozen: trained here it drifted to the training objects (held-out category from
                  # the image tokens 81% -> 69%); frozen, held-out image-decided accuracy rose 53% -> 71%
                  _functional(max_examples=3000, batch_size=8, max_length=128, lr=8e-4, epochs=1.0,
                              function_token_weight=2.0, save_every=25, kind_shares=GROUNDING_MIX,
                              train={"vision_encoder": "frozen", "projector": "frozen", "lm": "lora"})]
        return Profile(name, preset("quick"), ClipStageConfig(), stages, data_n_per_function=1000)
    if name == "full":  # many GPUs under `accelerate launch`: all data, full fine-tune as in Octopus v2
        stages = [_alignment(data="naming.jsonl", batch_size=64, max_length=40, epochs=5.0, lr=1e-3,
                             grounding_loss_weight=1.0),  # on GPUs the LM's naming loss is affordable too
                  _functional(batch_size=32, max_length=160, epochs=3.0, lr=5e-5, kind_shares=GROUNDING_MIX,
                              train={"vision_encoder": "frozen", "projector": "full", "lm": "full"})]
        return Profile(name, preset("full"), ClipStageConfig(method="open_clip_train", epochs=20,
                                                               unlocked_groups=2, batch_size=256, lr=5e-4),
                       stages, data_n_per_function=5000)
    raise ValueError(f"unknown profile {name!r}; choose one of tiny, quick, full")
