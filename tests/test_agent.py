"""The composed agent on tiny random configs: splicing, token table, save/load, constrained generation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from octopus.functions import END_TOKEN, IMAGE_TOKEN, NO_FUNCTION_TOKEN, function_tokens  # noqa: E402
from octopus.model.agent import OctopusAgent  # noqa: E402
from octopus.model.config import AgentConfig  # noqa: E402
from octopus.model.lm import load_lm  # noqa: E402
from octopus.model.presets import TINY_LM, tiny  # noqa: E402
from octopus.model.tokens import add_agent_tokens, token_descriptions  # noqa: E402
from octopus.prompt import PROMPT_PREFIX  # noqa: E402


def test_children_are_named_components(tiny_agent):
    names = [name for name, _ in tiny_agent.named_children()]
    assert names == ["vision_encoder", "projector", "lm"]


def test_prompt_has_image_tokens_before_the_query(tiny_agent):
    ids = tiny_agent.encode_prompt("order this")
    n = tiny_agent.num_image_tokens
    positions = [i for i, t in enumerate(ids) if t == tiny_agent.tokens.image_id]
    prefix_len = len(tiny_agent.tokenizer.encode(PROMPT_PREFIX, add_special_tokens=False))
    assert positions == list(range(prefix_len, prefix_len + n))
    text = tiny_agent.tokenizer.decode(ids)
    assert text.index(IMAGE_TOKEN) < text.index("order this") < text.index("Response:")


def test_splice_replaces_exactly_the_image_positions(tiny_agent, photo):
    ids = torch.tensor([tiny_agent.encode_prompt("what is this"), tiny_agent.encode_prompt("what is this")])
    pixels = torch.cat([tiny_agent.pixels(photo), torch.zeros_like(tiny_agent.pixels(photo))])  # two images
    with torch.no_grad():
        plain = tiny_agent.lm.get_input_embeddings()(ids)
        spliced = tiny_agent.embed(ids, pixels)
        image_embeds = tiny_agent.image_embeds(pixels)  # (2, N, D)
    assert spliced.shape == plain.shape  # the sequence length never changes
    mask = ids == tiny_agent.tokens.image_id
    assert torch.equal(spliced[~mask], plain[~mask])
    for b in range(2):
        assert torch.allclose(spliced[b][mask[b]], image_embeds[b])
    assert not torch.allclose(spliced[0][mask[0]], spliced[1][mask[1]])


def test_splice_rejects_a_wrong_number_of_image_tokens(tiny_agent, photo):
    ids = torch.tensor([tiny_agent.encode_prompt("x")[:-1] + [tiny_agent.tokens.image_id]])
    with pytest.raises(ValueError, match="image tokens"):
        tiny_agent.embed(ids, tiny_agent.pixels(photo))


def test_training_loss_is_finite_and_backpropagates_into_the_projector(tiny_agent, photo):
    prompt = tiny_agent.encode_prompt("order this")
    target = tiny_agent.encode_target('<nexa_3>(product="cup")<nexa_end>')
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    tiny_agent.zero_grad()
    loss = tiny_agent(ids, tiny_agent.pixels(photo), labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert tiny_agent.projector.mlp[0].weight.grad.abs().sum() > 0
    tiny_agent.zero_grad()


def test_token_table_ids_are_single_tokens(tiny_agent):
    tok = tiny_agent.tokenizer
    for token in [*function_tokens(), NO_FUNCTION_TOKEN, END_TOKEN, IMAGE_TOKEN]:
        assert len(tok.encode(token, add_special_tokens=False)) == 1
    call = tok.encode('<nexa_4>(item="can")<nexa_end>', add_special_tokens=False)
    assert call[0] == tiny_agent.tokens.function_ids[4] and call[-1] == tiny_agent.tokens.end_id
    assert tiny_agent.lm.get_input_embeddings().weight.shape[0] == len(tok)
    assert tiny_agent.lm.get_output_embeddings().weight.shape[0] == len(tok)


@pytest.mark.parametrize("tied", [False, True])
def test_semantic_init_is_the_mean_of_description_tokens(tied):
    torch.manual_seed(1)
    config = AgentConfig(lm=tiny().lm)
    config.lm.inline = dict(TINY_LM, tie_word_embeddings=tied)
    lm, tok = load_lm(config.lm)
    before_in = lm.get_input_embeddings().weight.detach().clone()
    before_out = lm.get_output_embeddings().weight.detach().clone()
    old_vocab = len(tok)
    table = add_agent_tokens(lm, tok, init="semantic")
    descriptions = token_descriptions()
    emb_in = lm.get_input_embeddings().weight
    emb_out = lm.get_output_embeddings().weight
    for k, token in enumerate(function_tokens()):
        seed = tok.encode(descriptions[token], add_special_tokens=False)
        assert torch.allclose(emb_in[table.function_ids[k]], before_in[seed].mean(0))
        assert torch.allclose(emb_out[table.function_ids[k]], (before_in if tied else before_out)[seed].mean(0))
    assert torch.equal(emb_in[:old_vocab], before_in[:old_vocab])  # old rows untouched
    rows = emb_in[list(table.function_ids)]
    assert torch.cdist(rows, rows).triu(1)[torch.ones(10, 10).triu(1).bool()].min() > 0  # all distinct
    assert add_agent_tokens(lm, tok) == table  # idempotent


@pytest.mark.parametrize("init", ["mean", "random"])
def test_other_init_methods(init):
    torch.manual_seed(2)
    lm, tok = load_lm(tiny().lm)
    before = lm.get_input_embeddings().weight.detach().clone()
    table = add_agent_tokens(lm, tok, init=init)
    rows = lm.get_input_embeddings().weight[list(table.function_ids)].detach()
    if init == "mean":
        assert torch.allclose(rows, before.mean(0).expand_as(rows))
    else:
        assert not torch.allclose(rows[0], rows[1]) and rows.std() > 0


def test_unknown_init_fails_loudly():
    lm, tok = load_lm(tiny().lm)
    with pytest.raises(ValueError, match="unknown token init"):
        add_agent_tokens(lm, tok, init="zeros")


def test_save_load_round_trip_gives_identical_logits(tiny_agent, photo, tmp_path):
    tiny_agent.save(tmp_path / "agent")
    loaded = OctopusAgent.load(tmp_path / "agent")
    assert (tmp_path / "agent" / "config.json").is_file() and (tmp_path / "agent" / "lm").is_dir()
    assert loaded.config == tiny_agent.config
    assert loaded.tokens == tiny_agent.tokens
    ids = torch.tensor([tiny_agent.encode_prompt("send it to bob@example.com")])
    with torch.no_grad():
        a = tiny_agent(ids, tiny_agent.pixels(photo)).logits
        b = loaded(ids, loaded.pixels(photo)).logits
    assert torch.equal(a, b)
    assert loaded.generate(photo, "hi").raw == tiny_agent.generate(photo, "hi").raw


def test_load_of_a_missing_dir_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved octopus agent"):
        OctopusAgent.load(tmp_path)


def _untied_agent() -> OctopusAgent:
    """A tiny agent whose output rows are separate from its input rows, so each can be set on its own."""
    config = tiny()
    config.lm.inline = dict(TINY_LM, tie_word_embeddings=False)
    return OctopusAgent.build(config).eval()


def _constant_lm(agent, favourite: int) -> None:
    """Make the LM predict `favourite` after every input: blocks add nothing, all tokens embed alike."""
    with torch.no_grad():
        for layer in agent.lm.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        agent.lm.get_input_embeddings().weight.fill_(1.0)
        agent.lm.model.norm.weight.fill_(1.0)
        out = agent.lm.get_output_embeddings().weight
        out.zero_()
        out[favourite] = 1.0


def test_first_generated_token_is_constrained(photo):
    agent = _untied_agent()
    _constant_lm(agent, favourite=7)  # an ordinary token is the LM's clear favourite everywhere
    for query in ["order this for me", "帮我处理一下这个", "set an alarm"]:
        ids = torch.tensor([agent.encode_prompt(query)])
        with torch.no_grad():
            assert int(agent(ids, agent.pixels(photo)).logits[0, -1].argmax()) == 7  # unconstrained choice
        g = agent.generate(photo, query, max_new_tokens=6)
        generated = agent.tokenizer.encode(g.raw, add_special_tokens=False)
        assert generated[0] in agent.tokens.first_token_ids
        assert generated[1:] == [7] * 5  # later tokens are free; max_new_tokens bounds the length


def test_generation_stops_at_the_end_token(photo):
    agent = _untied_agent()
    _constant_lm(agent, favourite=agent.tokens.end_id)
    g = agent.generate(photo, "what is this", max_new_tokens=20)
    ids = agent.tokenizer.encode(g.raw, add_special_tokens=False)
    assert ids == [agent.tokens.function_ids[0], agent.tokens.end_id]
    assert set(g.timings_ms) >= {"image_encode", "prefill", "decode", "total"}


@pytest.mark.parametrize("grid, side", [(7, 4), (4, 2), (4, 3)])
def test_projector_pooling_equals_adaptive_average_pooling(grid, side):
    from octopus.model.config import ProjectorConfig
    from octopus.model.projector import Projector

    projector = Projector(ProjectorConfig(num_image_tokens=side * side), grid * grid, 8, 6)
    patches = torch.randn(2, grid * grid, 8)
    reference = torch.nn.functional.adaptive_avg_pool2d(patches.transpose(1, 2).reshape(2, 8, grid, grid), side)
    assert torch.allclose(projector.pool @ patches, reference.flatten(2).transpose(1, 2), atol=1e-6)
    assert "pool" not in projector.state_dict()  # derived, not stored
