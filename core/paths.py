"""Where octopus keeps what it derives on this machine (the dequantized SmolLM2, downloaded or rendered assets):
one cache folder, `$OCTOPUS_CACHE` or the platform's user cache (`~/.cache/octopus` on Linux). Torch-free.
(The device's state, its outbox, lives in the config's state directory: device/config.py.)"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("OCTOPUS_CACHE", user_cache_dir("octopus")))
