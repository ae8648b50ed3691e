"""`octopus demo`: answer one request about one image with the built-in default model.

The built-in default is the `quick` profile trained on the built-in data (`runs/quick/agent`). When it is not
there yet, the demo builds the data and trains it first (tens of minutes on 2 cores; the command resumes
where it stopped if interrupted). `--untrained` answers at once with a tiny untrained agent instead, and says
that its answer is random.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

RUNS = Path("runs")
DEFAULT_MODEL_DIR = RUNS / "quick" / "agent"
SAMPLE_OBJECT = "ramen"  # a held-out object: no training row shows it


def sample_image(path: Path) -> Path:
    """A rendered sample scene: a bowl of ramen (held out of training) on a surface."""
    from octopus.training.data.concepts import concept
    from octopus.training.data.scenes import render_scene

    image, _ = render_scene(random.Random(7), "openmoji", concept(SAMPLE_OBJECT), [concept("pencil")])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def run_demo(args: argparse.Namespace) -> int:
    import torch

    from octopus.cli import CliError
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny
    from octopus.preprocess import ImageError, load_image

    image_path = Path(args.image) if args.image else sample_image(RUNS / "demo" / "sample.png")
    try:
        image = load_image(image_path)
    except ImageError as exc:
        raise CliError(str(exc)) from None
    if args.untrained:
        torch.manual_seed(0)
        agent = OctopusAgent.build(tiny()).eval()
        note = "model: a tiny UNTRAINED agent (--untrained): its answer is random"
    else:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            from octopus.training.pipeline import train

            print("No trained model at runs/quick/agent yet: building the data and training the quick profile "
                  "(about an hour on 2 CPU cores; re-run to resume if interrupted).", flush=True)
            train("all", "quick", RUNS / "data", RUNS / "quick")
        agent = OctopusAgent.load(DEFAULT_MODEL_DIR)
        note = f"model: {DEFAULT_MODEL_DIR} (quick profile)"
    generation = agent.generate(image, args.query)
    print(note)
    print(f"image: {image_path}\nquery: {args.query}")
    print(f"call:  {generation.raw}")
    print(json.dumps({"function": generation.function, "arguments": generation.arguments,
                      "timings_ms": {k: round(v, 1) for k, v in generation.timings_ms.items()}},
                     ensure_ascii=False))
    return 0
