"""`octopus demo`: answer one request about one image with the built-in default model.

The default model is the newest agent that `octopus train all` wrote to the default output dir; until one
exists it is a tiny *untrained* agent, and the demo says so plainly (its output is random by design).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_MODEL_DIR = Path("runs/quick/agent")


def sample_image(path: Path) -> Path:
    """A simple sample scene drawn with Pillow: a red mug on a wooden table."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (222, 205, 180))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 170, 320, 240), fill=(139, 94, 60))
    draw.rectangle((120, 90, 190, 175), fill=(200, 30, 40))
    draw.arc((175, 105, 215, 150), 270, 90, fill=(200, 30, 40), width=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def run_demo(args: argparse.Namespace) -> int:
    import torch

    from octopus.cli import CliError
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny
    from octopus.preprocess import ImageError

    model_dir = DEFAULT_MODEL_DIR
    if (model_dir / "config.json").is_file():
        agent, note = OctopusAgent.load(model_dir), f"model: {model_dir}"
    else:
        torch.manual_seed(0)
        agent = OctopusAgent.build(tiny()).eval()
        note = ("model: a tiny UNTRAINED agent (no trained model at runs/quick/agent yet; "
                "run `octopus train all` to make one): its answer is random")
    image = Path(args.image) if args.image else sample_image(Path("runs/demo/sample.png"))
    try:
        generation = agent.generate(image, args.query)
    except ImageError as exc:
        raise CliError(str(exc)) from None
    print(note)
    print(f"image: {image}\nquery: {args.query}")
    print(f"call:  {generation.raw}")
    print(json.dumps({"function": generation.function, "arguments": generation.arguments,
                      "timings_ms": {k: round(v, 1) for k, v in generation.timings_ms.items()}},
                     ensure_ascii=False))
    return 0
