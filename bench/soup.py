"""A weight soup of saved agents that share their image side: `training/soup.py` from the command line.

Stage-2 runs of one recipe with different seeds over the same stage 1 differ only in their LM (its LoRA is merged
into the saved weights; the quick profile freezes the vision encoder and the projector there), so their LMs can
be averaged tensor by tensor into one agent of the same size and speed. Agents whose vision/projector weights
differ are refused with a one-line error: from different stage 1s, a soup would read image tokens neither was
trained on (`train` with `stage2_functional.soup=N` averages seeds that trained their projector from one start).
The soup is a saved agent for `bench/first_token_kinds.py`, `bench/wording_errors.py` or `make model`'s later
steps.

    .venv/bin/python bench/soup.py --out runs/soup/agent runs/b16/stage2_functional/agent \
        runs/b16s1/stage2_functional/agent
"""

from __future__ import annotations

import argparse
from pathlib import Path

from octopus.training.soup import soup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the soup's agent folder (replaced)")
    parser.add_argument("agents", nargs="+", type=Path, metavar="AGENT_DIR")
    args = parser.parse_args()
    try:
        print(soup(args.agents, args.out, same_image_side=True))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
