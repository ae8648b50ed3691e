"""The typed config tree of an agent, saved as `config.json` beside every checkpoint and exported bundle.

One tree, one override mechanism (`with_override`: `AgentConfig.override("projector.num_image_tokens=4")` and
every training stage's `--set` go through it). This module knows the shape of a configuration and how to read
and write it; it builds nothing.
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


NAME_KEY = "name."  # a `projector.name_slots` key `name.zh`: slots that always spell the object's own name


def slot_spells_name(key: str, names: list[dict[str, Any]]) -> bool:
    """Whether the name slots under `key` spell the object's own name (and so can carry an argument, and be
    swapped in training): a `name.` key always, a language key when no entry `show`s other text."""
    return key.startswith(NAME_KEY) or not any(entry.get("show") for entry in names)


@dataclass
class ProjectorConfig:
    kind: str = "mlp2x_gelu"
    downsample: str = "pool"  # "pool" (adaptive average pool of the patch grid) or "pixel_shuffle"
    num_image_tokens: int = 16  # a square number; with pixel_shuffle, grid_side / sqrt(N) must be whole
    # "rms": RMS-normalise each image token, then a learned per-channel gain initialised at the RMS of the LM's
    # text embeddings, so image tokens start on the scale the LM reads (without it they drifted to ~10x text)
    output_norm: str = "rms"
    # name slots: after the image tokens, per language this many tokens that spell the name of the object the
    # image tokens read back as (nearest of `names` by cosine to the LM's embeddings of each name), written with
    # the LM's own embeddings of that name's tokens: the LM copies a name it can see into an argument, as it
    # copies words of the request. {} = none; e.g. {"en": 4, "zh": 10} with names [{"en": "cat", "zh": "猫"}, ...]
    name_slots: dict[str, int] = field(default_factory=dict)
    # an entry may carry "show": {"en": "a pet"}: the slots then spell that text where the object is read back
    # (the key stays the object's own name), e.g. the object's category, from which image-decided requests take
    # their function
    names: list[dict[str, Any]] = field(default_factory=list)
    # what training fills `names` with when slots are asked for and no names are given: "name" (each object of
    # the concept table spells its own name) or "category" (each spells its category's name, which held-out
    # objects share with trained ones)
    slot_text: str = "name"
    # read the name slots back from the image and its mirror image together (the summed unit mean tokens of
    # both): one more vision pass where pixels are at hand (inference, the export's vision graph, stage 3's
    # rollouts); paths given cached features (stages 1-2) read from the image alone. An inference setting that
    # `octopus model pack --slot-flip` records; it needs no training (bench/stage1_scenes.py --flip measures it)
    slot_flip: bool = False
    # > 0: the name slots read a photograph through the vision trunk's own ImageNet classifier (the packaged
    # EfficientNet-Lite0's head, on the same pooled features) where it puts at least this probability on the
    # ImageNet classes of one name (`imagenet` of the entry, else model/imagenet_names.json), and through the
    # keys otherwise. The keys were learnt on rendered icons and read a real photo as noise; the head, trained on
    # photographs, is confident on photos of the objects it knows and rarely on icons. Inference only, like
    # `slot_flip` (with it, the head reads the image and its mirror together); `octopus model pack
    # --slot-imagenet` records it. 0: off
    slot_imagenet: float = 0.0

    def spells_names(self) -> bool:
        """Whether some name slots spell the object's own name (a `name.` key, or no entry `show`s other text),
        so that an argument can be copied from them and training's name swap has something to swap."""
        return any(slot_spells_name(key, self.names) for key in self.name_slots)


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
    # user functions after the ten, as JSON (octopus.functions.Function.to_json): `octopus train extend` appends
    functions: list[dict[str, Any]] = field(default_factory=list)
    # decoding: added to the no-function token's first-token logit, per request language ({"zh": 1.0}); travels
    # into the export's manifest (decoding.reject_bias); `octopus eval/ask --reject-bias` and the device config
    # change it without retraining (bench/reject_bias.py measures what it trades)
    reject_bias: dict[str, float] = field(default_factory=dict)

    def registry(self):
        """The functions this agent calls: the ten, then its user functions (their tokens follow the ten's)."""
        from octopus.functions import Registry  # (standard library only; kept off this module's import line)

        return Registry.with_user_functions(self.functions)

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
        config = self
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep:
                raise ValueError(f"override {assignment!r} is not of the form section.key=value")
            config = with_override(config, key.strip(), raw)
        return config


def parse_value(raw: str) -> Any:
    """An override's value: JSON where it parses (`1e-3`, `true`, `null`, `[1, 2]`, `{"a": 1}`), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def with_override(config: Any, key: str, raw: str, _path: str = "") -> Any:
    """The one override mechanism of every config tree (the agent's, a training stage's, stage 0's): a copy of
    the dataclass `config` with the dotted `key` set from the text `raw`. Nested dataclasses and dicts are
    followed (`vision.model`, `rl.rewards`, `train.lm`); a list given for a tuple becomes a tuple; the copy is
    built through the dataclass's own constructor, so its checks run. An unknown key is a ValueError naming
    the choices."""
    head, _, rest = key.partition(".")
    where = f"{_path}{head}"
    if dataclasses.is_dataclass(config):
        names = [f.name for f in dataclasses.fields(config)]
        if head not in names:
            raise ValueError(f"override {where!r}: unknown key {head!r}; choose from {', '.join(names)}")
        current = getattr(config, head)
    elif isinstance(config, dict):
        current = config.get(head)
    else:
        raise ValueError(f"override {_path.rstrip('.')!r} is a value, it has no key {head!r}")
    if rest:
        if current is None or not (dataclasses.is_dataclass(current) or isinstance(current, dict)):
            raise ValueError(f"override {where!r} is a value, it has no key {rest.split('.')[0]!r}")
        value = with_override(current, rest, raw, f"{where}.")
    else:
        value = parse_value(raw)
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
    if isinstance(config, dict):
        return {**config, head: value}
    return dataclasses.replace(config, **{head: value})


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
