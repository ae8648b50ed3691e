"""The config tree: JSON round trip, overrides, loud failures on unknown keys."""

from __future__ import annotations

import pytest

from octopus.model.config import AgentConfig


def test_json_round_trip(tmp_path):
    config = AgentConfig().override("projector.num_image_tokens=9", "vision.pretrained=/ckpt/clip.pt")
    config.save(tmp_path / "config.json")
    assert AgentConfig.load(tmp_path / "config.json") == config
    assert config.projector.num_image_tokens == 9 and config.vision.pretrained == "/ckpt/clip.pt"


def test_override_parses_json_values_and_rejects_unknown_keys():
    config = AgentConfig().override("vision.mean=[0.5, 0.5, 0.5]", "lm.source=HuggingFaceTB/SmolLM2-135M")
    assert config.vision.mean == (0.5, 0.5, 0.5) and config.lm.source == "HuggingFaceTB/SmolLM2-135M"
    with pytest.raises(ValueError, match="unknown key"):
        AgentConfig().override("vision.colour=red")
    with pytest.raises(ValueError, match="section.key=value"):
        AgentConfig().override("vision.model")
    with pytest.raises(ValueError, match="unknown key"):
        AgentConfig.from_dict({"vision": {}, "extra": 1})
