"""numpy preprocessing matches open_clip's own eval transform; bad files give one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from octopus.preprocess import ImageError, load_image, preprocess

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.parametrize("size", [32, 224])
@pytest.mark.parametrize("shape", [(61, 97), (97, 61), (300, 300), (224, 224), (20, 400)])
def test_matches_open_clip_transform(size, shape):
    open_clip = pytest.importorskip("open_clip")
    rng = np.random.default_rng(sum(shape) + size)
    image = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), "RGB")
    reference = open_clip.image_transform(size, is_train=False, mean=MEAN, std=STD)(image).numpy()
    ours = preprocess(image, size, MEAN, STD)
    assert ours.shape == reference.shape == (3, size, size)
    assert np.abs(ours - reference).max() < 1e-5


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageError, match="no image file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "notes.jpg")
    Image.new("RGB", (40, 30), "red").save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    with pytest.raises(ImageError):
        load_image(tmp_path / "cut.png")
    Image.new("RGBA", (40, 30), (0, 0, 255, 128)).save(tmp_path / "alpha.png")
    assert load_image(tmp_path / "alpha.png").mode == "RGB"


def test_huge_images_are_refused(tmp_path):
    Image.new("1", (9000, 9000)).save(tmp_path / "huge.png")  # 81 Mpx, a few KB on disk
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "huge.png")
