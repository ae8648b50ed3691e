"""A weight soup: the mean of several saved agents' LMs, for agents that share their image side.

Stage-2 runs of one recipe with different seeds over the same stage 1 differ only in their LM (its LoRA is merged
into the saved weights; the vision encoder and the projector are frozen there), so their LMs can be averaged
tensor by tensor into one agent of the same size and speed. Refused, with a one-line error, when the agents'
vision/projector weights or LM tensor names differ. The soup is written as a saved agent (the first agent's
config, tokenizer and image side, the averaged LM) for `bench/wording_errors.py`, `bench/tf_compare.py` or
`make model`'s later steps.

    .venv/bin/python bench/soup.py --out runs/soup/agent runs/b16/stage2_functional/agent \
        runs/b16s1/stage2_functional/agent
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from octopus.model.agent import VISION_WEIGHTS

LM_WEIGHTS = Path("lm") / "model.safetensors"


def soup(agents: list[Path], out: Path) -> dict:
    """Write the soup of `agents` to `out`; returns what was averaged."""
    for agent in agents:
        if not (agent / VISION_WEIGHTS).is_file() or not (agent / LM_WEIGHTS).is_file():
            raise SystemExit(f"error: {agent} is not a saved agent with its LM in {LM_WEIGHTS}")
    image_side = load_file(agents[0] / VISION_WEIGHTS)
    for agent in agents[1:]:
        other = load_file(agent / VISION_WEIGHTS)
        if other.keys() != image_side.keys() or any(not torch.equal(other[k], v) for k, v in image_side.items()):
            raise SystemExit(f"error: {agent} has another image side than {agents[0]} (not one stage 1): "
                             "a soup of their LMs would read image tokens neither was trained on")
    first = load_file(agents[0] / LM_WEIGHTS)
    dtypes = {k: v.dtype for k, v in first.items()}
    total = {k: v.double() for k, v in first.items()}
    del first
    for agent in agents[1:]:
        lm = load_file(agent / LM_WEIGHTS)
        if lm.keys() != total.keys() or any(lm[k].shape != v.shape for k, v in total.items()):
            raise SystemExit(f"error: {agent}'s LM has other tensors than {agents[0]}'s")
        for k in total:
            total[k] += lm[k].double()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(agents[0], out)
    save_file({k: (v / len(agents)).to(dtypes[k]).contiguous() for k, v in total.items()}, out / LM_WEIGHTS,
              metadata={"format": "pt"})
    return {"agents": [str(a) for a in agents], "tensors": len(total), "out": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the soup's agent folder (replaced)")
    parser.add_argument("agents", nargs="+", type=Path, metavar="AGENT_DIR")
    args = parser.parse_args()
    if len(args.agents) < 2:
        raise SystemExit("error: a soup takes two agents or more")
    print(soup(args.agents, args.out))


if __name__ == "__main__":
    main()
