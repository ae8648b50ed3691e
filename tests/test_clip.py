"""Stage 0 building blocks: the ImageNet EfficientNet-Lite0 init on real photos, and zero-shot scoring."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_imagenet_init_recognises_real_photos():
    skimage_data = pytest.importorskip("skimage.data")
    import timm
    from PIL import Image

    from octopus.preprocess import preprocess
    from octopus.training.clip import efficientnet_lite0_imagenet_state

    model = timm.create_model("efficientnet_lite0")
    model.load_state_dict(efficientnet_lite0_imagenet_state())
    model.eval()
    photos = [Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.coffee())]
    pixels = torch.stack([torch.from_numpy(preprocess(p, 224, (0.5,) * 3, (0.5,) * 3)) for p in photos])
    with torch.no_grad():
        top5 = model(pixels).topk(5).indices.tolist()
    assert 285 in top5[0][:2]  # ImageNet 285: Egyptian cat
    assert top5[1][0] == 967  # ImageNet 967: espresso


def test_initial_checkpoint_loads_into_open_clip(tmp_path):
    import open_clip

    from octopus.training.clip import ClipStageConfig, efficientnet_lite0_imagenet_state, initial_checkpoint

    path = initial_checkpoint(ClipStageConfig(), tmp_path / "init.pt")
    model = open_clip.create_model("octopus-effnet-lite0", pretrained=str(path))
    reference = efficientnet_lite0_imagenet_state()["conv_stem.weight"]
    assert torch.equal(model.visual.trunk.conv_stem.weight, reference)


def test_cached_lit_resumes_after_a_kill_to_the_same_weights(tmp_path, monkeypatch, caplog):
    """Stage 0's cached LiT writes the checkpoints of every other stage (training/checkpoints.py): killed after
    its first epoch and run again, it goes on from there and ends with the weights of an uninterrupted run."""
    import numpy as np
    from PIL import Image

    from octopus.training import clip

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["filepath\ttitle"]
    for i, colour in enumerate(["red", "green", "blue", "yellow"] * 6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / "images" / f"{i}.png")
        lines += [f"images/{i}.png\ta {colour} square", f"images/{i}.png\t一个{colour}"]
    (data / "captions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = clip.ClipStageConfig(epochs=2, batch_size=16, warmup=2, precision="fp32")
    clean = clip.train_clip(data, tmp_path / "clean", config)
    save = clip.save_checkpoint

    def save_then_die(*args, **kwargs):
        path = save(*args, **kwargs)
        raise KeyboardInterrupt(f"killed after writing {path.name}")

    monkeypatch.setattr(clip, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        clip.train_clip(data, tmp_path / "killed", config)
    checkpoints = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and (tmp_path / "killed" / "checkpoints" / checkpoints[0] / "meta.json").is_file()
    monkeypatch.setattr(clip, "save_checkpoint", save)
    with caplog.at_level("INFO", logger="octopus.training.clip"):
        resumed = clip.train_clip(data, tmp_path / "killed", config)
    assert f"resuming cached LiT from {tmp_path / 'killed' / 'checkpoints' / checkpoints[0]} (epoch 1)" in caplog.text
    assert not (tmp_path / "killed" / "checkpoints").exists()
    a, b = torch.load(clean)["state_dict"], torch.load(resumed)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    untrained = torch.load(tmp_path / "clean" / "init.pt")["state_dict"]
    assert not torch.equal(a["text_projection"], untrained["text_projection"])
