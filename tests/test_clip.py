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
