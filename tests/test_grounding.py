"""Seeing, measured and trained: image-token scale, the grounding loss, cached features, length-grouped
batches, logits at labelled positions, the eval breakdown by request kind, the image swap and the naming probe."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from octopus.evaluate import format_metrics, metrics, swap_metrics, swap_rows  # noqa: E402
from octopus.model.agent import OctopusAgent, shared_prefix  # noqa: E402
from octopus.model.presets import tiny  # noqa: E402
from octopus.training.data.build import object_split_of, read_rows  # noqa: E402
from octopus.training.datasets import (  # noqa: E402
    IGNORE,
    Collator,
    FeatureCache,
    LengthGroupedBatches,
    NameSwap,
    category_id,
    concept_id,
    drop_query_words,
    load_examples,
    minimal_pairs,
)
from octopus.training.loop import GroundingHeads, apply_train_modes, resolve_precision, run_stage  # noqa: E402
from octopus.training.stages import PROFILES, StageConfig  # noqa: E402

OCTOPUS = str(Path(sys.executable).parent / "octopus")


@pytest.fixture(scope="module")
def data_dir(small_data) -> Path:
    return small_data


@pytest.fixture
def agent():
    torch.manual_seed(0)
    return OctopusAgent.build(tiny())


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_image_tokens_start_on_the_scale_the_lm_reads_its_words(model_type, photo):
    """On the scale of the rows the LM reads, which Gemma's embedding module multiplies by sqrt(d_model): the
    raw table would put image tokens (and an exported embedding table) 5.7x too small on a width of 32."""
    from octopus.model.lm import input_embedding_table
    from octopus.model.presets import TINY_LM

    config = tiny()
    config.lm.inline = {**TINY_LM, "model_type": model_type, "head_dim": 16}
    torch.manual_seed(0)
    agent = OctopusAgent.build(config)
    with torch.no_grad():
        image = agent.image_embeds(agent.pixels(photo))[0]  # (N, D)
        ids = torch.arange(agent.lm.get_input_embeddings().weight.shape[0])
        read = agent.lm.get_input_embeddings()(ids)  # (V, D): what the LM reads for each token
    torch.testing.assert_close(input_embedding_table(agent.lm), read)
    ratio = float(image.norm(dim=-1).mean() / read.norm(dim=-1).mean())
    assert 0.8 < ratio < 1.25, ratio
    text = agent.lm.get_input_embeddings().weight
    from octopus.model.config import ProjectorConfig
    from octopus.model.projector import Projector

    bare = Projector(ProjectorConfig(num_image_tokens=4, output_norm="none"), 16, 32, text.shape[1])
    assert isinstance(bare.norm, torch.nn.Identity)
    with pytest.raises(ValueError, match="output_norm"):
        Projector(ProjectorConfig(output_norm="layer"), 16, 32, 8)


def test_a_mirror_steers_the_read_back_by_the_sum_of_the_two_unit_mean_tokens():
    """With a mirror, the name read back is the key nearest the sum of the image's and the mirror's unit mean
    tokens: here the image alone reads key 0, the mirror alone key 1, and together key 2 (between them)."""
    from octopus.model.projector import NameSlots

    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    slots = NameSlots(keys, torch.arange(3.0).reshape(3, 1, 1).expand(3, 1, 2))
    image = torch.tensor([[[1.0, 0.3], [3.0, 0.9]]])  # (1, 2, 2): mean (2, 0.6), nearest key 0
    mirror = torch.tensor([[[0.03, 0.1]]])  # a short mean: unit-normalised, it still counts as much as the image
    assert slots.index(image).tolist() == [0] and slots.index(mirror).tolist() == [1]
    assert slots.index(image, mirror).tolist() == [2]
    assert slots(image, mirror=mirror).tolist() == [[[2.0, 2.0]]]
    assert slots(image, torch.tensor([1]), mirror).tolist() == [[[1.0, 1.0]]]  # training's override still wins


def test_class_names_take_over_only_where_the_classifier_is_sure():
    """`ClassNames`: a name wins where its classes hold at least the threshold of the classifier's probability
    (of an image and its mirror together, when given), and -1 leaves the keys' reading."""
    from octopus.model.projector import ClassNames, NameSlots

    members = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 name 0, class 2 names 1
    head = ClassNames(torch.eye(3), torch.zeros(3), members, threshold=0.8)
    patches = torch.tensor([[[10.0, 0, 0]], [[0.0, 0, 0]], [[0.0, 0, 10]], [[6.0, 6.0, 0]]])  # (4, 1, 3)
    assert head(patches).tolist() == [0, -1, 1, 0]  # uniform: 2/3 on name 0, not sure; two classes of one name
    mirror = torch.tensor([[[0.0, 0, 10]], [[0.0, 0, 0]], [[0.0, 0, 10]], [[6.0, 6.0, 0]]])
    assert head(patches, mirror).tolist() == [-1, -1, 1, 0]  # the image says 0, its mirror 1: half each
    with pytest.raises(ValueError, match="probability"):
        ClassNames(torch.eye(3), torch.zeros(3), members, threshold=0.0)
    slots = NameSlots(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.arange(2.0).reshape(2, 1, 1).expand(2, 1, 2))
    tokens = torch.tensor([[[1.0, 0.1]], [[1.0, 0.1]]])  # both read as key 0
    assert slots.index(tokens, known=torch.tensor([-1, 1])).tolist() == [0, 1]
    assert slots(tokens, known=torch.tensor([-1, 1])).tolist() == [[[0.0, 0.0]], [[1.0, 1.0]]]


def test_the_packaged_imagenet_head_names_a_photograph_and_leaves_icons_to_the_keys(
        tmp_path, packaged_trunk_agent, cat_photo_and_icon):
    """`projector.slot_imagenet`: the trunk's own ImageNet head reads the demo's cat photograph as the cat (its
    five cat classes hold ~0.9 of the probability) and shows the cat's slots; a rendered icon scene, where the
    head is unsure, keeps the keys' reading. The setting is saved; the head's tables are not."""
    agent = packaged_trunk_agent(0.8)
    names = [n["en"] for n in agent.config.projector.names]
    cat, icon = cat_photo_and_icon
    pixels = torch.cat([agent.pixels(cat), agent.pixels(icon)])
    grid = agent.config.projector.num_image_tokens
    with torch.no_grad():
        known = agent.class_names(agent.vision_encoder(pixels))
        embeds = agent.image_embeds(pixels)
        keys = agent.projector.names.index(embeds[:, :grid])
    assert known.tolist() == [names.index("cat"), -1]
    torch.testing.assert_close(embeds[:, grid:], agent.projector.names.table[[names.index("cat"), int(keys[1])]])
    assert not any(k.startswith("class_names") for k in agent.state_dict(keep_vars=False))
    agent.save(tmp_path / "agent")
    again = OctopusAgent.load(tmp_path / "agent")
    assert again.config.projector.slot_imagenet == 0.8
    with torch.no_grad():
        torch.testing.assert_close(again.image_embeds(pixels), embeds)


def test_slot_imagenet_takes_an_entrys_own_classes_and_refuses_what_it_cannot_read(packaged_trunk_agent):
    from octopus.model.agent import imagenet_names

    config = packaged_trunk_agent(0.0).config
    config.projector.slot_imagenet = 0.8
    config.projector.names = [{"en": "cat", "zh": "猫"}, {"en": "kitty", "zh": "小猫", "imagenet": [285]},
                              {"en": "lamp", "zh": "灯"}]
    members = imagenet_names(config).members
    assert members[:, 0].nonzero().flatten().tolist() == [281, 282, 283, 284, 285]  # imagenet_names.json
    assert members[:, 1].nonzero().flatten().tolist() == [285] and not members[:, 2].any()
    config.projector.names[2]["imagenet"] = [1000]
    with pytest.raises(ValueError, match="class indices"):
        imagenet_names(config)
    inline = tiny().override('projector.name_slots={"en": 2}')
    inline.projector.names, inline.projector.slot_imagenet = [{"en": "cat"}], 0.8
    with pytest.raises(ValueError, match="efficientnet-lite0-imagenet"):
        OctopusAgent.build(inline)


def test_ask_refuses_an_agent_whose_config_asks_for_a_head_it_lacks_in_one_line(tmp_path, cat_photo_and_icon):
    config = tiny().override('projector.name_slots={"en": 2}')
    config.projector.names = [{"en": "cat"}, {"en": "lamp"}]
    torch.manual_seed(0)
    OctopusAgent.build(config).save(tmp_path / "agent")
    edited = json.loads((tmp_path / "agent" / "config.json").read_text())
    edited["projector"]["slot_imagenet"] = 0.8  # by hand, on an agent without the packaged trunk
    (tmp_path / "agent" / "config.json").write_text(json.dumps(edited))
    out = subprocess.run([OCTOPUS, "ask", "--model", str(tmp_path / "agent"), "--image", str(cat_photo_and_icon[0]),
                          "--query", "take care of this"], capture_output=True, text=True)
    lines = [line for line in out.stderr.splitlines() if line.startswith("octopus")]
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(lines) == 1, out.stderr[-2000:]
    assert "efficientnet-lite0-imagenet" in lines[0]


def test_flip_averaged_slots_read_an_image_and_its_mirror_alike(photo, tmp_path):
    """`projector.slot_flip`: the image tokens stay the image's own, and the slots show the name read back from
    the image and its mirror together, so a scene and its mirror image show the same name; saved in the config."""
    from octopus.training.data.concepts import CONCEPTS

    config = tiny().override('projector.name_slots={"en": 3}')
    config.projector.names = [{"en": c.en, "zh": c.zh} for c in CONCEPTS]
    torch.manual_seed(1)  # an agent that reads this photo and its mirror as different objects
    agent = OctopusAgent.build(config).eval()
    grid = config.projector.num_image_tokens
    pixels = agent.pixels(photo)
    pixels = torch.cat([pixels, pixels.flip(-1)])  # the photo and its mirror
    names = agent.projector.names
    with torch.no_grad():
        plain = agent.image_embeds(pixels)
        agent.config.projector.slot_flip = True
        flipped = agent.image_embeds(pixels)
    torch.testing.assert_close(flipped[:, :grid], plain[:, :grid])
    alone = names.index(plain[:, :grid]).tolist()
    assert alone[0] != alone[1]
    unit = torch.nn.functional.normalize(plain[:, :grid].mean(1), dim=-1)  # (2, D): the photo's, the mirror's
    both = int(((unit[0] + unit[1]) @ names.keys.T).argmax())
    torch.testing.assert_close(flipped[:, grid:], names.table[[both, both]])
    agent.save(tmp_path / "agent")
    again = OctopusAgent.load(tmp_path / "agent")
    assert again.config.projector.slot_flip
    with torch.no_grad():
        torch.testing.assert_close(again.image_embeds(pixels), flipped)


def test_name_slots_spell_the_read_back_object_in_the_lms_own_embeddings(photo, tmp_path):
    """Name slots follow the image tokens: the tokens of the name (EN, then ZH, each left-padded with zeros)
    of the object whose key is nearest the mean image token, as the LM's input embeddings; derived, not saved;
    the grounding loss reads the image tokens proper only."""
    from octopus.model.agent import name_slots
    from octopus.training.data.concepts import CONCEPTS

    config = tiny().override('projector.name_slots={"en": 3, "zh": 4}')
    config.projector.names = [{"en": c.en, "zh": c.zh} for c in CONCEPTS]
    torch.manual_seed(0)
    agent = OctopusAgent.build(config).eval()
    grid = config.projector.num_image_tokens
    assert agent.num_image_tokens == grid + 7
    with torch.no_grad():
        embeds = agent.image_embeds(agent.pixels(photo))[0]  # (N + S, D)
    table = agent.lm.get_input_embeddings().weight.detach()
    keys = GroundingHeads(agent).concepts  # stage 1 pulls the mean image token to these
    k = int((torch.nn.functional.normalize(embeds[:grid].mean(0), dim=0) @ keys.T).argmax())
    en = agent.tokenizer.encode(CONCEPTS[k].en, add_special_tokens=False)[:3]
    zh = agent.tokenizer.encode(CONCEPTS[k].zh, add_special_tokens=False)[:4]
    expected = torch.cat([torch.zeros(3 - len(en), table.shape[1]), table[en],
                          torch.zeros(4 - len(zh), table.shape[1]), table[zh]])
    torch.testing.assert_close(embeds[grid:], expected)
    assert not any(k.startswith("names") for k in agent.projector.state_dict())
    agent.save(tmp_path / "agent")
    with torch.no_grad():
        again = OctopusAgent.load(tmp_path / "agent").image_embeds(agent.pixels(photo))[0]
    torch.testing.assert_close(again, embeds)
    # the grounding loss ignores the slots: changing them changes nothing
    heads = GroundingHeads(agent)
    labels = torch.tensor([k]), torch.tensor([0])
    changed = embeds.clone()
    changed[grid:] = 7.0
    assert float(heads(embeds[None], *labels)) == float(heads(changed[None], *labels))
    with pytest.raises(ValueError, match="projector.names"):
        name_slots([], {"en": 2}, agent.tokenizer, table)
    with pytest.raises(ValueError, match="no zh name"):
        name_slots([{"en": "cat"}], {"en": 2, "zh": 2}, agent.tokenizer, table)


def test_category_slots_key_on_the_object_and_spell_its_category(photo, data_dir):
    """`projector.slot_text=category`: each concept keeps its own name as the key the image is read back by
    (so the read-back is the object's), and the slots spell that object's category; held-out objects share the
    category names trained objects show. Such slots carry no argument, so the name swap leaves every row."""
    from octopus.model.agent import name_slots
    from octopus.training.data.concepts import CATEGORY_NAMES, CONCEPTS
    from octopus.training.pipeline import apply_overrides, name_the_concepts
    from octopus.training.stages import profile

    prof = profile("tiny")
    apply_overrides(prof, ('projector.name_slots={"en": 4}', "projector.slot_text=category"))
    name_the_concepts(prof)
    names = prof.agent.projector.names
    assert len(names) == len(CONCEPTS)
    assert all(e["en"] == c.en and e["show"]["en"] == CATEGORY_NAMES[c.category][0] for e, c in zip(names, CONCEPTS))
    torch.manual_seed(0)
    agent = OctopusAgent.build(prof.agent).eval()
    grid = prof.agent.projector.num_image_tokens
    assert agent.num_image_tokens == grid + 4
    with torch.no_grad():
        embeds = agent.image_embeds(agent.pixels(photo))[0]
    keys = GroundingHeads(agent).concepts  # the object's own names: stage 1's concept read-back
    k = int((torch.nn.functional.normalize(embeds[:grid].mean(0), dim=0) @ keys.T).argmax())
    table = agent.lm.get_input_embeddings().weight.detach()
    ids = agent.tokenizer.encode(CATEGORY_NAMES[CONCEPTS[k].category][0], add_special_tokens=False)[:4]
    torch.testing.assert_close(embeds[grid:], torch.cat([torch.zeros(4 - len(ids), table.shape[1]), table[ids]]))
    rows = read_rows(data_dir / "train.jsonl")
    swap = NameSwap(names, rows, 1.0, seed=0)
    assert not swap.candidates and all(swap(r) == (r, -1) for r in rows)
    with pytest.raises(ValueError, match="show.zh"):
        name_slots([{"en": "cat", "zh": "猫", "show": {"en": "a pet"}}], {"en": 2, "zh": 2}, agent.tokenizer, table)
    prof.agent.projector.slot_text = "colour"
    with pytest.raises(ValueError, match="slot_text"):
        name_the_concepts(prof)


def test_category_and_name_slots_side_by_side_and_the_swap_changes_only_the_name(photo, data_dir):
    """`name.` keys beside a category: the slots spell the read-back object's category, then its own EN and ZH
    names; training's name swap shows another object's name in the `name.` slots only, the category slots
    keeping the picture's (the category decides the function, the name carries the argument)."""
    from octopus.model.agent import name_slots
    from octopus.training.data.concepts import CATEGORY_NAMES, CONCEPTS
    from octopus.training.pipeline import apply_overrides, name_the_concepts
    from octopus.training.stages import profile

    prof = profile("tiny")
    apply_overrides(prof, ('projector.name_slots={"en": 2, "name.en": 3, "name.zh": 4}',
                           "projector.slot_text=category"))
    name_the_concepts(prof)
    projector = prof.agent.projector
    assert projector.spells_names()
    assert not prof.agent.override('projector.name_slots={"en": 2}').projector.spells_names()
    torch.manual_seed(0)
    agent = OctopusAgent.build(prof.agent).eval()
    grid = projector.num_image_tokens
    assert agent.num_image_tokens == grid + 9
    with torch.no_grad():
        embeds = agent.image_embeds(agent.pixels(photo))[0]
    keys = GroundingHeads(agent).concepts
    k = int((torch.nn.functional.normalize(embeds[:grid].mean(0), dim=0) @ keys.T).argmax())
    table = agent.lm.get_input_embeddings().weight.detach()

    def spelled(text: str, count: int) -> torch.Tensor:
        ids = agent.tokenizer.encode(text, add_special_tokens=False)[:count]
        return torch.cat([torch.zeros(count - len(ids), table.shape[1]), table[ids]])

    def slots_of(i: int, names_of: int | None = None) -> torch.Tensor:
        named = CONCEPTS[i if names_of is None else names_of]
        return torch.cat([spelled(CATEGORY_NAMES[CONCEPTS[i].category][0], 2), spelled(named.en, 3),
                          spelled(named.zh, 4)])

    torch.testing.assert_close(embeds[grid:], slots_of(k))
    # the swap: another object's names, the picture's category
    rows = read_rows(data_dir / "train.jsonl")
    swap = NameSwap(projector.names, rows, 1.0, seed=0, spells_names=projector.spells_names())
    assert swap.candidates and not NameSwap(projector.names, rows, 1.0, seed=0).candidates
    other = next(i for i in swap.candidates if CONCEPTS[i].category != CONCEPTS[k].category)
    with torch.no_grad():
        shown = agent.projector.names(embeds[None, :grid], torch.tensor([other]))[0]
        kept = agent.projector.names(embeds[None, :grid], torch.tensor([-1]))[0]
    torch.testing.assert_close(shown, slots_of(k, names_of=other))
    torch.testing.assert_close(kept, slots_of(k))
    with pytest.raises(ValueError, match="no zh name"):
        name_slots([{"en": "cat", "show": {"en": "a pet"}}], {"en": 2, "name.zh": 2}, agent.tokenizer, table)


def test_name_swap_shows_another_trained_objects_name_and_the_target_follows_it(data_dir):
    """A seeded share of the rows whose argument only the picture names trains with another object's name in
    the slots and in the target, the function unchanged; the other name is one the training rows name; rows
    whose picture-named arguments are not one name (a recycling call's material) stay as they are."""
    from octopus.training.data.concepts import CONCEPTS

    names = [{"en": c.en, "zh": c.zh} for c in CONCEPTS]
    rows = read_rows(data_dir / "train.jsonl")
    swap = NameSwap(names, rows, 0.5, seed=0)
    named = [r for r in rows if swap.named(r) is not None]
    assert named and {names[i]["en"] for i in swap.candidates} <= {CONCEPTS[i].en for i in range(len(CONCEPTS))
                                                                    if object_split_of(CONCEPTS[i].key) == "train"}
    swapped = 0
    for row in named:
        out, index = swap(row)
        assert swap(row) == (out, index)  # fixed per row: a resumed run sees the same batches
        if index < 0:
            assert out is row
            continue
        swapped += 1
        old, args = swap.named(row)
        new = names[index][row["language"]]
        assert index != old and index in swap.candidates
        assert out["target"].split("(")[0] == row["target"].split("(")[0]  # the same functional token
        assert all(f'{a}="{new}"' in out["target"] and out["arguments"][a] == new for a in args)
        assert swap.named(out) == (index, args)
        unspelled = {**row, "target": row["target"].replace('="', "='")}  # chosen, but no `arg="name"` to swap
        assert swap(unspelled) == (unspelled, -1)
    assert 0.3 < swapped / len(named) < 0.7
    material = {**named[0], "meta": {**named[0]["meta"], "provenance": {"item": "image", "material": "image"}},
                "arguments": {"item": names[0]["en"], "material": "plastic"}}
    assert swap.named(material) is None and swap(material) == (material, -1)
    assert all(NameSwap(names, rows, 0.0, seed=0)(r)[1] == -1 for r in named)
    with pytest.raises(ValueError, match="between 0 and 1"):
        NameSwap(names, rows, 1.5, seed=0)
    with pytest.raises(ValueError, match="functional stages only"):
        StageConfig(name="s1", kind="alignment", data="captions.csv", name_swap=0.5,
                    train={"vision_encoder": "frozen", "projector": "full", "lm": "frozen"})
    # the batch carries each row's name index, and the slots show that name's embeddings
    config = tiny().override('projector.name_slots={"en": 3, "zh": 4}')
    config.projector.names = names
    torch.manual_seed(0)
    agent = OctopusAgent.build(config).eval()
    chunk = [{**r, "image": str(data_dir / r["image"])} for r in named[:4]]
    batch = Collator(agent, "functional", 128, name_swap=NameSwap(names, rows, 1.0, seed=0))(chunk)
    assert batch["name_index"].tolist() == [NameSwap(names, rows, 1.0, seed=0)(r)[1] for r in chunk]
    pixels = batch["pixels"]
    grid = config.projector.num_image_tokens
    with torch.no_grad():
        shown = agent.image_embeds(pixels, batch["name_index"])[:, grid:]
        read_back = agent.image_embeds(pixels)
    torch.testing.assert_close(shown, agent.projector.names.table[batch["name_index"]])
    torch.testing.assert_close(agent.image_embeds(pixels, torch.full((4,), -1))[:, grid:], read_back[:, grid:])


def test_naming_rows_and_the_trained_object_diagnostic_split(data_dir):
    naming = read_rows(data_dir / "naming.jsonl")
    assert {r["language"] for r in naming} == {"en", "zh"}
    pizza = next(r for r in naming if r["concept"] == "pizza" and r["language"] == "zh")
    assert pizza["prompt"] == "这是" and pizza["caption"] == "披萨，熟食。"
    diagnostic = read_rows(data_dir / "test_trained_objects.jsonl")
    assert diagnostic and {r["meta"]["kind"] for r in diagnostic} == {"image", "ambiguous"}
    assert {r["meta"]["object_split"] for r in diagnostic} == {"train"}
    test = read_rows(data_dir / "test.jsonl")
    assert {r["meta"]["object_split"] for r in test if r["meta"]["kind"] in ("image", "ambiguous")} == {"test"}
    train_templates = {r["meta"]["template"] for r in read_rows(data_dir / "train.jsonl")}
    assert not train_templates & {r["meta"]["template"] for r in diagnostic}  # new wordings, known objects
    assert {object_split_of(r["meta"]["objects"][0]) for r in diagnostic} == {"train"}


def test_kind_shares_set_the_mix(data_dir):
    rows = load_examples(data_dir, "train.jsonl", 40, 0, {"ambiguous": 0.5, "text": 0.5})
    kinds = [r["meta"]["kind"] for r in rows]
    assert set(kinds) == {"ambiguous", "text"} and abs(kinds.count("ambiguous") - 20) <= 1
    with pytest.raises(ValueError, match="unknown kinds"):
        load_examples(data_dir, "train.jsonl", 10, 0, {"visual": 1.0})


def test_language_shares_set_the_mix_within_each_kind(data_dir):
    shares = {"ambiguous": 0.5, "text": 0.5}
    rows = load_examples(data_dir, "train.jsonl", 40, 0, shares, {"en": 0.25, "zh": 0.75})
    pairs = Counter((r["meta"]["kind"], r["language"]) for r in rows)
    assert len(rows) == 40 and pairs == {("ambiguous", "en"): 5, ("ambiguous", "zh"): 15, ("text", "en"): 5,
                                         ("text", "zh"): 15}
    alone = load_examples(data_dir, "train.jsonl", 20, 0, None, {"en": 0.25, "zh": 0.75})  # over the whole subset
    assert Counter(r["language"] for r in alone) == {"en": 5, "zh": 15}
    assert len({r["image"] + r["query"] for r in alone}) == 20
    with pytest.raises(ValueError, match="unknown languages"):
        load_examples(data_dir, "train.jsonl", 10, 0, None, {"fr": 1.0})
    profile = PROFILES["quick"]()  # how a user sets them: `--set 'stage2_functional.language_shares={...}'`
    profile.override('stage2_functional.language_shares={"en": 0.35, "zh": 0.65}')
    assert profile.stages[profile.index("functional")].language_shares == {"en": 0.35, "zh": 0.65}
    with pytest.raises(ValueError, match="language_shares"):
        profile.override('stage2_functional.language_shares={"en": -1, "zh": 1}')


def test_labels_for_the_grounding_loss(data_dir):
    naming = read_rows(data_dir / "naming.jsonl")[0]
    assert concept_id(naming) >= 0 and category_id(naming) >= 0
    assert concept_id({"query": "hi"}) == IGNORE == category_id({"query": "hi"})


def test_feature_cache_matches_the_encoder_resumes_and_refuses_a_changed_encoder(agent, data_dir, tmp_path):
    images = list(dict.fromkeys(r["image"] for r in load_examples(data_dir, "naming.jsonl", None, 0)))[:70]
    assert len(images) == 70  # two chunks of 64: the second is partial
    cache = FeatureCache(tmp_path / "cache", agent, images)
    # the fill runs channels_last; the weights come back in the default layout (safetensors saves only those)
    assert all(p.is_contiguous() for p in agent.vision_encoder.parameters())
    with torch.no_grad():
        direct = agent.vision_encoder.eval()(torch.cat([agent.pixels(p) for p in images[:3]]))
    assert torch.allclose(cache(images[:3]), direct, atol=2e-3 * direct.abs().max())
    meta = json.loads((tmp_path / "cache" / "features.json").read_text())
    assert meta["done_chunks"] == 2
    last = sorted(images)[-2:]  # rows of the second chunk
    expected = cache(last)
    meta["done_chunks"] = 1  # as if killed after the first chunk, before the second was written
    (tmp_path / "cache" / "features.json").write_text(json.dumps(meta))
    cache.array[64:] = 0
    cache.array.flush()
    again = FeatureCache(tmp_path / "cache", agent, images)
    assert torch.equal(again(last), expected)  # the second chunk was filled again
    with torch.no_grad():
        next(agent.vision_encoder.parameters()).mul_(2)
    changed = FeatureCache(tmp_path / "cache", agent, images)
    assert changed.fingerprint != cache.fingerprint
    assert not torch.equal(changed(images[:1]), cache(images[:1]))


def test_length_grouped_batches_cover_every_row_once_and_group_lengths():
    lengths = [(i * 37) % 50 + 5 for i in range(300)]
    sampler = LengthGroupedBatches(lengths, 8, seed=3)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(300)) and len(batches) == len(sampler)
    assert batches == list(sampler)  # same epoch, same order: a resume skips exactly what it did
    assert [len(b) for b in batches] == [8] * 37 + [4]  # the short batch last (split across processes)
    sampler.set_epoch(1)
    assert list(sampler) != batches
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 5  # random batches of these lengths spread over ~40


def test_minimal_pairs_share_the_words_and_a_batch_and_differ_in_picture_and_call(data_dir):
    rows = load_examples(data_dir, "train.jsonl", None, 0)
    paired, partner = minimal_pairs(rows, 1.0, seed=0)
    assert len(paired) == len(rows) and [r["image"] for r in paired] == [r["image"] for r in rows]
    pairs = [(i, j) for i, j in enumerate(partner) if j > i]
    assert pairs and all(partner[j] == i for i, j in pairs)
    for i, j in pairs:
        a, b = paired[i], paired[j]
        assert a["query"] == b["query"] and a["meta"]["template"] == b["meta"]["template"]
        assert a["meta"]["kind"] == b["meta"]["kind"] == "ambiguous" and not a["meta"]["slots"]
        assert a["function"] != b["function"] and a["image"] != b["image"]
        assert b["target"] == rows[j]["target"]  # each keeps the call its own picture decides
    unpaired = [i for i, j in enumerate(partner) if j < 0]
    assert all(paired[i] == rows[i] for i in unpaired)  # only a pair's second row changes (its words)
    assert minimal_pairs(rows, 1.0, seed=0) == (paired, partner)
    assert sum(p >= 0 for p in minimal_pairs(rows, 0.5, seed=0)[1]) < len(pairs) * 2
    assert minimal_pairs(rows, 0.0, seed=0) == (rows, [-1] * len(rows))
    with pytest.raises(ValueError, match="between 0 and 1"):
        minimal_pairs(rows, 1.5, seed=0)
    with pytest.raises(ValueError, match="minimal_pairs"):
        StageConfig(name="s", kind="alignment", data="naming.jsonl", minimal_pairs=0.5,
                    train={"vision_encoder": "frozen", "projector": "full", "lm": "frozen"})

    lengths = [len(r["query"]) + len(r["target"]) for r in paired]
    sampler = LengthGroupedBatches(lengths, 8, seed=1, partners=partner)
    batches = list(sampler)
    batch_of = {i: k for k, b in enumerate(batches) for i in b}
    assert sorted(batch_of) == list(range(len(rows))) and len(batches) == len(sampler)
    assert all(len(b) == 8 for b in batches[:-1])  # only the last batch is short
    assert all(batch_of[i] == batch_of[j] for i, j in pairs)
    assert batches == list(sampler)


def test_labelled_logits_equal_the_full_logits_at_labelled_positions(agent, data_dir):
    rows = load_examples(data_dir, "train.jsonl", 4, 0)
    batch = Collator(agent, "functional", 128)(rows)
    agent.eval()
    with torch.no_grad():
        full = agent(batch["input_ids"], batch["pixels"], attention_mask=batch["attention_mask"]).logits
        out = agent(batch["input_ids"], pixels=batch["pixels"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"], labelled_only=True)
    keep = batch["labels"][:, 1:] != IGNORE
    assert torch.allclose(out.logits, full[:, :-1][keep], atol=1e-4)
    assert torch.equal(out.targets, batch["labels"][:, 1:][keep])


def test_the_shared_prompt_head_runs_once_with_the_same_logits_and_gradients(agent, data_dir):
    rows = load_examples(data_dir, "train.jsonl", 4, 0)
    collator = Collator(agent, "functional", 128)
    batch = collator(rows)
    shared = shared_prefix(batch["input_ids"], batch["attention_mask"], agent.tokens.image_id)
    assert shared > 10 and int(batch["input_ids"][0, shared]) == agent.tokens.image_id  # the instruction, whole
    naming = Collator(agent, "alignment", 40)(load_examples(data_dir, "naming.jsonl", 4, 0))
    assert shared_prefix(naming["input_ids"], naming["attention_mask"], agent.tokens.image_id) == 0  # image first
    assert shared_prefix(batch["input_ids"][:1], batch["attention_mask"][:1], agent.tokens.image_id) == 0
    stage = StageConfig(name="s2", kind="functional", data="train.jsonl", lora_dropout=0.0,
                        train={"vision_encoder": "frozen", "projector": "frozen", "lm": "lora"})
    apply_train_modes(agent, stage)
    agent.eval()
    params = [p for p in agent.parameters() if p.requires_grad]

    def grads(batches: list[dict]) -> list[torch.Tensor]:
        agent.zero_grad()
        for b in batches:
            out = agent(b["input_ids"], pixels=b["pixels"], attention_mask=b["attention_mask"], labels=b["labels"],
                        labelled_only=True)
            torch.nn.functional.cross_entropy(out.logits, out.targets, reduction="sum").backward()
        return [p.grad.clone() for p in params]

    together = grads([batch])  # the head once, its KV cache repeated over 4 rows
    alone = grads([collator([r]) for r in rows])  # one row at a time: nothing shared
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max())) for a, b in zip(together, alone))
    assert any(float(g.abs().max()) > 0 for g in together)


def test_grounding_loss_alone_trains_only_the_projector_and_separates_concepts(agent, data_dir, tmp_path):
    stage = StageConfig(name="align", kind="alignment", data="naming.jsonl", max_examples=64, batch_size=16,
                        epochs=6, lr=3e-3, lm_loss_weight=0.0, grounding_loss_weight=1.0, save_every=1000,
                        precision="no", train={"vision_encoder": "frozen", "projector": "full", "lm": "frozen"})
    rows = load_examples(data_dir, "naming.jsonl", 64, 0)
    heads = GroundingHeads(agent)
    collator = Collator(agent, "alignment", 40)

    def loss() -> float:
        batch = collator(rows)
        with torch.no_grad():
            return float(heads(agent.image_embeds(batch["pixels"]), batch["concept"], batch["category"]))

    lm_before = {k: v.clone() for k, v in agent.lm.state_dict().items()}
    before = loss()
    run_stage(agent, stage, data_dir, tmp_path / "align")
    trained = OctopusAgent.load(tmp_path / "align" / "agent")
    assert all(torch.equal(lm_before[k], v) for k, v in trained.lm.state_dict().items())
    agent.projector.load_state_dict(trained.projector.state_dict())
    assert loss() < before - 0.3
    assert (tmp_path / "align" / "vision_cache" / "features.npy").is_file()


def test_lora_on_the_top_layers_changes_only_those_layers_and_the_new_token_rows(agent, data_dir, tmp_path):
    stage = StageConfig(name="top", kind="functional", data="train.jsonl", max_examples=16, batch_size=8, lr=5e-3,
                        save_every=1000, precision="no", lora_layers=1, query_dropout=0.2, code_switch=0.5,
                        train={"vision_encoder": "frozen", "projector": "frozen", "lm": "lora"})
    before = {k: v.clone() for k, v in agent.lm.state_dict().items()}
    run_stage(agent, stage, data_dir, tmp_path / "top")
    after = OctopusAgent.load(tmp_path / "top" / "agent").lm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    top = agent.lm.config.num_hidden_layers - 1
    assert any(f"layers.{top}." in k for k in changed)
    assert not any(".layers." in k and f"layers.{top}." not in k for k in changed)  # lower layers untouched
    assert "model.embed_tokens.weight" in changed  # the new rows learn through the tied output layer
    with pytest.raises(ValueError, match="projector must be frozen"):
        StageConfig(name="x", kind="functional", data="train.jsonl", lora_layers=2,
                    train={"vision_encoder": "frozen", "projector": "full", "lm": "lora"})


def test_a_stage_trains_with_name_slots_and_the_profile_names_every_concept(data_dir, tmp_path):
    """`--set projector.name_slots=...` alone gives the agent the data's concept names; a functional stage
    trains on prompts with the slots' placeholders and the saved agent answers with them."""
    from octopus.training.data.concepts import CONCEPTS
    from octopus.training.pipeline import apply_overrides, name_the_concepts
    from octopus.training.stages import profile

    prof = profile("tiny")
    apply_overrides(prof, ('projector.name_slots={"en": 2, "zh": 3}',))
    name_the_concepts(prof)
    assert prof.agent.projector.names[0] == {"en": CONCEPTS[0].en, "zh": CONCEPTS[0].zh}
    assert len(prof.agent.projector.names) == len(CONCEPTS)
    torch.manual_seed(0)
    agent = OctopusAgent.build(prof.agent)
    stage = StageConfig(name="slots", kind="functional", data="train.jsonl", max_examples=16, batch_size=8,
                        lr=5e-3, save_every=1000, precision="no", name_swap=0.5,
                        train={"vision_encoder": "frozen", "projector": "frozen", "lm": "lora"})
    batch = Collator(agent, "functional", 128)(load_examples(data_dir, "train.jsonl", 2, 0))
    assert int((batch["input_ids"][0] == agent.tokens.image_id).sum()) == 4 + 5
    run_stage(agent, stage, data_dir, tmp_path / "slots")
    trained = OctopusAgent.load(tmp_path / "slots" / "agent")
    assert trained.num_image_tokens == 9 and trained.projector.names.slots == 5
    row = read_rows(data_dir / "test.jsonl")[0]
    assert trained.generate(data_dir / row["image"], row["query"]).raw.startswith("<nexa_")


def test_set_reaches_a_stage_by_name_and_the_agent_config():
    from octopus.training.pipeline import apply_overrides
    from octopus.training.stages import profile

    prof = profile("quick")
    apply_overrides(prof, ("stage2_functional.max_examples=123", "stage2_functional.lr=0.01",
                           "projector.num_image_tokens=9", "stage2_functional.query_dropout=0.15"))
    assert prof.stages[1].max_examples == 123 and prof.stages[1].lr == 0.01
    assert prof.stages[1].query_dropout == 0.15
    assert prof.agent.projector.num_image_tokens == 9
    with pytest.raises(ValueError, match="unknown key"):
        apply_overrides(prof, ("stage2_functional.no_such_knob=1",))


def test_stage0_is_a_named_stage_that_takes_its_tower_from_the_agent():
    from octopus.training.pipeline import apply_overrides
    from octopus.training.stages import profile

    prof = profile("tiny")
    assert prof.stage_names() == ["stage0_clip", "stage1_alignment", "stage2_functional", "stage3_rl"]
    assert (prof.clip.model, prof.clip.image_mean) == (prof.agent.vision.model, prof.agent.vision.mean)
    apply_overrides(prof, ("stage0_clip.epochs=3", "stage0_clip.method=cached_lit", "vision.mean=[0.1, 0.2, 0.3]",
                           "stage2_functional.train.lm=full"))
    assert prof.clip.epochs == 3 and prof.clip.method == "cached_lit"
    assert prof.clip.image_mean == prof.agent.vision.mean == (0.1, 0.2, 0.3)
    assert prof.stages[1].train["lm"] == "full" and prof.stages[1].train["projector"] == "full"
    with pytest.raises(ValueError, match="set vision.std instead"):
        apply_overrides(prof, ("stage0_clip.image_std=[1, 1, 1]",))
    with pytest.raises(ValueError, match="unknown key 'epoch'; choose from model, method"):
        apply_overrides(prof, ("stage0_clip.epoch=3",))
    with pytest.raises(ValueError, match="unknown train modes"):
        apply_overrides(prof, ("stage2_functional.train.lm=half",))
    pretrained = profile("tiny")
    pretrained.clip = None
    with pytest.raises(ValueError, match="has no stage 0"):
        apply_overrides(pretrained, ("stage0_clip.epochs=3",))


def test_precision_auto_follows_the_hardware():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    native = " avx512_bf16" in flags or " amx_bf16" in flags  # emulated bf16 (any AVX512) is slower than fp32
    expected = "bf16" if (torch.cuda.is_available() or native) else "no"
    assert resolve_precision("auto") == expected
    assert resolve_precision("no") == "no"


def _prediction(kind, language, function, predicted, split=None, template="t"):
    meta = {"kind": kind, "template": template, "objects": ["pizza"]}
    if split:
        meta["object_split"] = split
    return {"language": language, "function": function, "predicted_function": predicted, "arguments": {},
            "predicted_arguments": {}, "meta": meta, "timings_ms": {"total": 1.0}}


def test_metrics_split_by_kind_language_and_object():
    predictions = [
        _prediction("ambiguous", "en", "doordash_delivery", "doordash_delivery", "train"),
        _prediction("ambiguous", "en", "doordash_delivery", "lost_and_found", "test"),
        _prediction("ambiguous", "zh", "pet_care", "pet_care", "test"),
        _prediction("text", "en", "send_email", "send_email"),
        _prediction("irrelevant", "zh", None, "send_email"),
        {**_prediction("image", "zh", "pet_care", "pet_care", "test"), "arguments": {"pet": "仓鼠"},
         "predicted_arguments": {"pet": "猫"}},
    ]
    m = metrics(predictions)
    assert m["argument_exact_match_by_kind"] == {"image_decides": {"all": 0.6667, "en": 0.5, "zh": 1.0},
                                                 "image_names_object": {"all": 0.0, "zh": 0.0},
                                                 "text_decides": {"all": 1.0, "en": 1.0}}
    assert "argument exact match by request kind:" in format_metrics(m)
    assert m["function_accuracy_by_kind"]["image_decides"] == {"all": 0.6667, "en": 0.5, "zh": 1.0}
    assert m["image_rows_by_object_split"]["image_decides/held_out_objects"]["all"] == 0.5
    assert m["image_rows_by_object_split"]["image_decides/trained_objects"]["all"] == 1.0
    assert m["irrelevant_rejection_by_language"] == {"zh": 0.0}


def test_image_swap_takes_a_donor_of_the_same_template_and_another_function():
    rows = []
    for i, function in enumerate(["doordash_delivery", "instacart_shopping", "amazon_shopping"] * 2):
        row = _prediction("ambiguous", "en", function, None, "test", template=f"order/{i % 2}")
        rows.append({**row, "image": f"{i}.jpg", "image_path": f"/d/{i}.jpg", "query": f"q{i % 2}"})
    swapped = swap_rows(rows, seed=1)
    assert len(swapped) == len(rows)
    for new in swapped:
        assert new["function"] != new["swapped_from"]
        donor = next(r for r in rows if r["image"] == new["image"])
        assert donor["meta"]["template"] == new["meta"]["template"] and donor["function"] == new["function"]
    follow = [{**s, "predicted_function": s["function"]} for s in swapped[:4]] + \
             [{**s, "predicted_function": s["swapped_from"]} for s in swapped[4:]]
    result = swap_metrics(follow)
    assert result["follow_rate"] == round(4 / 6, 4) and result["kept_original_rate"] == round(2 / 6, 4)


def test_ranked_naming_scores_each_name_as_a_pass_over_the_whole_sequence_would(agent, photo):
    """The ranked probe's one cue pass, cached keys and values and chunks of like-length, padded names give each
    name the summed log-probability the LM gives image tokens + cue + name run whole, one name at a time."""
    from octopus.training.data.build import NAMING_CUES
    from octopus.training.probes import NameScorer, continuation

    agent.eval()
    keys = ("cat", "fried_chicken", "dog", "bento_box", "rabbit")
    image_embeds = agent.image_embeds(agent.pixels(photo))
    for language in ("en", "zh"):
        scorer = NameScorer(agent, language, keys, chunk=2)
        assert any(bool((mask == 0).any()) for _, _, mask in scorer.chunks)  # padding is exercised
        expected = []
        for key in keys:
            prefix = [agent.tokens.image_id] * agent.num_image_tokens + \
                agent.tokenizer.encode(NAMING_CUES[language], add_special_tokens=False)
            name = agent.tokenizer.encode(continuation(key, language), add_special_tokens=False)
            ids = torch.tensor([prefix + name])
            with torch.no_grad():
                logits = agent.lm(inputs_embeds=agent.embed(ids, image_embeds=image_embeds)).logits[0].float()
            steps = logits.log_softmax(-1)
            expected.append(sum(float(steps[len(prefix) + j - 1, t]) for j, t in enumerate(name)))
        assert scorer.scores(image_embeds).tolist() == pytest.approx(expected, abs=1e-3)
        assert scorer.best(image_embeds) == keys[max(range(len(keys)), key=expected.__getitem__)]


def test_cached_calls_use_the_installed_transformers_cache_keyword(agent, photo):
    """transformers 5.x renamed `past_key_values` to `cache` (the old name warns on every call and goes in 5.40):
    generation and the probes pass a KV cache under whichever name the installed version takes."""
    import warnings

    from octopus.training.probes import NameScorer

    agent.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        agent.generate(photo, "help me with this")
        NameScorer(agent, "en", ("cat", "dog")).scores(agent.image_embeds(agent.pixels(photo)))


def test_eval_cli_reports_kinds_swap_and_naming_probe(agent, data_dir, tmp_path):
    agent.eval().save(tmp_path / "agent")
    out = subprocess.run([OCTOPUS, "eval", "--model", str(tmp_path / "agent"), "--data",
                          str(data_dir / "test.jsonl"), "--swap", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads(out.stdout)
    assert {"image_decides", "text_decides", "image_names_object"} <= set(m["function_accuracy_by_kind"])
    assert m["image_swap"]["rows"] > 0 and 0 <= m["image_swap"]["follow_rate"] <= 1
    probe = subprocess.run([OCTOPUS, "eval", "--model", str(tmp_path / "agent"), "--data",
                            str(data_dir / "clip_val.jsonl"), "--probe", "naming", "--limit", "6", "--json"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    result = json.loads(probe.stdout)
    assert result["rows"] == 6 and set(result["top1"]["all"]) == {"en", "zh"}
    assert set(result["ranked_top1"]["all"]) == {"en", "zh"} and set(result["ranked_top1_blank"]) == {"en", "zh"}
    assert all(0 <= v <= 1 for v in result["ranked_top1"]["all"].values())
    assert set(result["ranked_over_blank_top1"]["all"]) == {"en", "zh"}
    wrong = subprocess.run([OCTOPUS, "eval", "--model", str(tmp_path / "agent"), "--data",
                            str(data_dir / "test.jsonl"), "--probe", "naming"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "concept" in wrong.stderr and "Traceback" not in wrong.stderr


def test_word_dropout_drops_request_words_but_never_a_slot_value():
    rows = [{"image": f"images/{i}.jpg", "query": q, "language": lang, "meta": {"slots": slots}}
            for i in range(40) for q, lang, slots in [
                ("发短信给王阿姨：面包没了，谢谢", "zh", {"contact": "王阿姨", "message": "面包没了"}),
                ("please text Aunt Linda that the bus is late, thanks!", "en",
                 {"contact": "Aunt Linda", "message": "the bus is late"}),
                ("关掉无线网", "zh", {})]]
    dropped = drop_query_words(rows, 0.3, seed=0)
    assert len(dropped) == len(rows) and drop_query_words(rows, 0.3, seed=0) == dropped  # seeded
    changed = [(a, b) for a, b in zip(rows, dropped) if a != b]
    assert len(changed) > len(rows) // 2
    for before, after in changed:
        assert after["image"] == before["image"] and after["query"] and len(after["query"]) < len(before["query"])
        for value in before["meta"]["slots"].values():
            assert value in after["query"]  # the call still copies what the request says
        if before["language"] == "en":  # whole words go, never part of one
            assert set(after["query"].split()) <= set(before["query"].split())
    assert drop_query_words(rows, 0.0, seed=0) == rows
    assert drop_query_words(rows, 0.3, seed=1) != dropped
    with pytest.raises(ValueError, match="probability"):
        drop_query_words(rows, 1.0, seed=0)
    with pytest.raises(ValueError, match="query_dropout"):
        StageConfig(name="s", kind="alignment", train={"vision_encoder": "frozen", "projector": "full",
                                                       "lm": "frozen"}, data="captions.csv", query_dropout=0.1)
