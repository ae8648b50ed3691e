"""Which runtime answers for a model folder: the torch agent (a training output) or, later, exported ONNX.

`load_backend(path)` looks at the folder's files (never at its name) and returns an object with
`generate(image, query) -> Generation`. Torch is imported only for a torch agent folder.
"""

from __future__ import annotations

from pathlib import Path


class ModelError(ValueError):
    """A model folder that is missing or is not one this program can load."""


def load_backend(path: str | Path):
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"no model folder at {path}")
    if (path / "config.json").is_file() and (path / "vision_projector.safetensors").is_file():
        from octopus.model.agent import OctopusAgent

        return OctopusAgent.load(path)
    raise ModelError(f"{path} is not an octopus model folder (expected config.json and vision_projector.safetensors)")
