"""Which runtime answers for a model folder: the torch agent (a training output) or exported ONNX.

`load_backend(path)` looks at the folder's files (never at its name) and returns an object with
`generate(image, query) -> Generation`. Torch is imported only for a torch agent folder.
"""

from __future__ import annotations

from pathlib import Path


class ModelError(ValueError):
    """A model folder that is missing or is not one this program can load."""


def load_backend(path: str | Path, precision: str = "auto"):
    """`precision` picks the exported graph set (auto: int8 when exported, else fp32); torch agents are fp32."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"no model folder at {path}")
    if (path / "manifest.json").is_file():
        from octopus.bundle import ManifestError
        from octopus.device.runtime import OnnxAgent

        try:
            return OnnxAgent(path, precision=precision)
        except ManifestError as exc:
            raise ModelError(str(exc)) from None
    if (path / "config.json").is_file() and (path / "vision_projector.safetensors").is_file():
        try:
            from octopus.model.agent import OctopusAgent
        except ImportError:
            raise ModelError(f"{path} is a torch agent folder and needs torch (pip install 'octopus-agent[train]'); "
                             "export it with `octopus export` to run it without torch") from None

        try:
            return OctopusAgent.load(path)
        except ValueError as exc:  # a config the agent cannot be built from (e.g. edited by hand)
            raise ModelError(f"{path}: {exc}") from None
    raise ModelError(f"{path} is not an octopus model folder (no manifest.json, nor config.json with "
                     "vision_projector.safetensors)")
