"""Shared fixtures: tiny random agents built locally (nothing downloaded) and real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_agent():
    torch = pytest.importorskip("torch")
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    return OctopusAgent.build(tiny()).eval()


@pytest.fixture
def photo() -> Image.Image:
    """A photo-like RGB image (smooth gradients plus noise), not square, so resize and crop matter."""
    rng = np.random.default_rng(0)
    h, w = 61, 97
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")
