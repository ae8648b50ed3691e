"""One checkpoint format for every stage that trains in this process (stage 0's cached LiT, stages 1-3).

`stage_dir/checkpoints/step_NNNNNN/` holds the state, then `meta.json` (the step and whatever the stage needs to
go on: epoch, history, best), written last: a folder without it was cut off mid-write and is ignored. The state
is accelerate's `save_state` when the stage runs on an Accelerator (model, optimizer, scheduler, RNG, one file
per process), else `state.pt`, the stage's own torch state dicts. Of a model, an Accelerator's checkpoint holds
what the stage trains (parameters that take gradients) and the buffers, not the frozen weights: a resume loads
those again from the stage's input, as the interrupted run did (a quick-profile stage-2 checkpoint: 47 MB
against 604 MB with them; bench/checkpoint_save.py). The newest KEEP_CHECKPOINTS complete ones are
kept. (When stage 0 runs through open_clip_train instead, open_clip writes and resumes its own checkpoints.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import torch

KEEP_CHECKPOINTS = 2
STATE_FILE = "state.pt"


class Checkpoint(NamedTuple):
    path: Path
    meta: dict  # includes "step"
    state: dict | None  # the saved state dicts, without an accelerator; None with one (it has loaded them)


def latest_checkpoint(stage_dir: Path) -> Path | None:
    checkpoints = sorted((stage_dir / "checkpoints").glob("step_*"))
    complete = [c for c in checkpoints if (c / "meta.json").is_file()]
    return complete[-1] if complete else None


def save_checkpoint(stage_dir: Path, step: int, meta: dict, accelerator=None, state: dict | None = None) -> Path:
    """Write `checkpoints/step_NNNNNN` from the accelerator's state, or from `state` (torch state dicts)."""
    if (accelerator is None) == (state is None):
        raise ValueError("save_checkpoint takes an accelerator or a state, not both or neither")
    target = stage_dir / "checkpoints" / f"step_{step:06d}"
    if accelerator is not None:
        if not getattr(accelerator, "_octopus_trainable_only", False):
            accelerator.register_save_state_pre_hook(_trainable_only)
            accelerator._octopus_trainable_only = True
        accelerator.save_state(str(target))
        accelerator.wait_for_everyone()  # every process has written its part (RNG states) before it is marked done
        main = accelerator.is_main_process
    else:
        target.mkdir(parents=True, exist_ok=True)
        torch.save(state, target / STATE_FILE)
        main = True
    if main:
        (target / "meta.json").write_text(json.dumps({"step": step, **meta}))
        for old in sorted((stage_dir / "checkpoints").glob("step_*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _trainable_only(models: list, weights: list, output_dir: str) -> None:
    """accelerate's pre-save hook: each model's state dict keeps its trainable parameters and its buffers."""
    for model, state in zip(models, weights):
        frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
        for name in frozen & set(state):
            del state[name]


def load_checkpoint(stage_dir: Path, accelerator=None) -> Checkpoint | None:
    """The newest complete checkpoint: loaded into the accelerator, or its state dicts returned; None if none."""
    path = latest_checkpoint(stage_dir)
    if path is None:
        return None
    state = None
    if accelerator is not None:
        # not strict: the frozen weights are not in it (save_checkpoint), and they are the stage's input already
        accelerator.load_state(str(path), strict=False)
    else:
        state = torch.load(path / STATE_FILE, weights_only=True)
    return Checkpoint(path, json.loads((path / "meta.json").read_text()), state)


def remove_checkpoints(stage_dir: Path) -> None:
    """Once the stage has written its output, its checkpoints are of no further use."""
    shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
