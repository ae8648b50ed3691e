"""A weight soup: one agent whose weights are the mean of several saved agents fine-tuned from one start.

Stage-2 runs of one recipe with different seeds over the same stage 1 (each seed draws its own subset of the data,
its own batches and LoRA initialisation) land in one basin; the tensor-by-tensor mean of their weights is an agent
of the same size and speed that reads held-out wordings better than either (bench/MEASURED.md, "A soup of two
batch-16 seeds"). Frozen tensors are equal in every agent and stay as they are; integer buffers must be equal.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from octopus.model.agent import VISION_WEIGHTS

LM_WEIGHTS = Path("lm") / "model.safetensors"
WEIGHT_FILES = (Path(VISION_WEIGHTS), LM_WEIGHTS)


def _mean(files: list[Path]) -> dict[str, torch.Tensor]:
    """The mean of the floating tensors of `files` (read one at a time: one file's worth in float64 in memory)."""
    first = load_file(files[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first.items()}
    dtypes = {k: v.dtype for k, v in first.items()}
    del first
    for path in files[1:]:
        other = load_file(path)
        if other.keys() != total.keys() or any(other[k].shape != v.shape for k, v in total.items()):
            raise ValueError(f"{path} holds other tensors than {files[0]}: not the same agent architecture")
        for k, v in total.items():
            if v.is_floating_point():
                v += other[k].double()
            elif not torch.equal(v, other[k]):
                raise ValueError(f"{path}: integer tensor {k} differs from {files[0]}'s")
    return {k: (v / len(files)).to(dtypes[k]).contiguous() if v.is_floating_point() else v
            for k, v in total.items()}


def _check_image_side(agents: list[Path]) -> None:
    image_side = load_file(agents[0] / VISION_WEIGHTS)
    for agent in agents[1:]:
        other = load_file(agent / VISION_WEIGHTS)
        if other.keys() != image_side.keys() or any(not torch.equal(other[k], v) for k, v in image_side.items()):
            raise ValueError(f"{agent} has another image side than {agents[0]} (not one stage 1): a soup of their "
                             "LMs would read image tokens neither was trained on")


def soup(agents: list[Path], out: Path, same_image_side: bool = False) -> Path:
    """Write the soup of the saved `agents` to `out` (replaced): the first agent's config and tokenizer, every
    weight averaged. Raises ValueError when they are not agents of one architecture, or, with `same_image_side`,
    when their vision/projector weights differ (agents from different stage 1s, whose LMs read different image
    tokens; stage 2's seeds in `train` trained their projector from one start and are averaged whole)."""
    if len(agents) < 2:
        raise ValueError("a soup takes two agents or more")
    for agent in agents:
        missing = [str(f) for f in WEIGHT_FILES if not (agent / f).is_file()]
        if missing:
            raise ValueError(f"{agent} is not a saved agent (no {', '.join(missing)})")
    if same_image_side:
        _check_image_side(agents)
    means = {f: _mean([agent / f for agent in agents]) for f in WEIGHT_FILES}
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(agents[0], staging)
    for f, tensors in means.items():
        save_file(tensors, staging / f, metadata={"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out
