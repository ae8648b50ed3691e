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


def test_a_thin_strip_is_preprocessed_in_bounded_memory(tmp_path):
    """A 373-byte 100000x1 PNG peaked at 624 MB when the whole strip was upscaled before cropping."""
    import subprocess
    import sys

    Image.new("RGB", (100_000, 1), (200, 30, 30)).save(tmp_path / "strip.png")
    code = ("from octopus.preprocess import load_image, preprocess\n"
            f"x = preprocess(load_image({str(tmp_path / 'strip.png')!r}), 224, (0.5,) * 3, (0.5,) * 3)\n"
            "assert x.shape == (3, 224, 224)\n"  # peak RSS of this process (VmHWM starts afresh at exec)
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 200  # MB peak for the whole interpreter, image included


def test_sixteen_bit_greyscale_keeps_its_tones(tmp_path):
    values = np.full((20, 30), 32768, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(values).save(tmp_path / "grey16.png")
    pixels = np.asarray(load_image(tmp_path / "grey16.png"))
    assert pixels.shape == (20, 30, 3) and abs(int(pixels.mean()) - 128) <= 1  # not clipped to white


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").size == (20, 40)
