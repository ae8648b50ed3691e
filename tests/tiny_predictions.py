"""The predictions of a seeded tiny agent (torch, ONNX fp32, ONNX int8) on fixed images and requests.

Run as a script at a commit to record them (`python tests/tiny_predictions.py > tests/fixtures/tiny_predictions.json`);
tests/test_generation.py checks that the code today gives the recorded ones: a refactor changes no prediction.
The fixture was recorded at 55ca2a1, before the answer step, checkpoint and export-spec moves of issue 12.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

QUERIES = ("order this for me", "帮我处理一下这个", "email bob@example.com about lunch", "给妈妈发短信说我晚点到",
           "where can I recycle this", "what's the weather on Mars")


def images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:61, 0:97]
    gradient = np.stack([x / 97 * 255, y / 61 * 255, (x + y) / 158 * 255], -1)
    return [Image.fromarray(np.clip(gradient + rng.normal(0, 25, gradient.shape), 0, 255).astype(np.uint8), "RGB"),
            Image.new("RGB", (48, 48), (200, 40, 40)), Image.new("RGB", (300, 120), (20, 160, 90))]


def tiny_predictions(workdir: Path) -> dict[str, list[str]]:
    import torch

    from octopus.device.runtime import OnnxAgent
    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    agent = OctopusAgent.build(tiny()).eval()
    with torch.no_grad():  # an untrained tiny agent says the same thing to everything: louder weights do not
        for parameter in agent.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    agent.save(workdir / "agent")
    export(workdir / "agent", workdir / "onnx", int8=True, decoder="torch")
    backends = {"torch": agent, "onnx_fp32": OnnxAgent(workdir / "onnx", precision="fp32"),
                "onnx_int8": OnnxAgent(workdir / "onnx", precision="int8")}
    return {name: [backend.generate(image, query, max_new_tokens=10).raw for image in images() for query in QUERIES]
            for name, backend in backends.items()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        json.dump(tiny_predictions(Path(tmp)), sys.stdout, ensure_ascii=False, indent=1)
        print()
