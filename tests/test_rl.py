"""Stage 3: rewards rank right above wrong, GRPO's equations are TRL's, the judge talks to a real HTTP server,
the reward model's pairs, and the tiny profile's stage 3 end to end (only the LoRA'd LM changes)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ChatServer

torch = pytest.importorskip("torch")

from octopus.calls import format_call  # noqa: E402
from octopus.training import rewards as R  # noqa: E402
from octopus.training.reward_model import WRONG_KINDS, build_pairs, gold_text  # noqa: E402
from octopus.training.rl import group_advantages, grpo_loss, weighted_rewards  # noqa: E402
from octopus.training.stages import RULE_REWARDS, profile  # noqa: E402

ROWS = [
    {"query": "can you order this for me?", "language": "en", "function": "doordash_delivery",
     "arguments": {"dish": "pizza"}, "meta": {"kind": "ambiguous", "template": "t1", "objects": ["pizza"]}},
    {"query": "帮我买这个", "language": "zh", "function": "instacart_shopping",
     "arguments": {"item": "鸡蛋", "quantity": 2}, "meta": {"kind": "ambiguous", "template": "t2", "objects": ["egg"]}},
    {"query": "email ann@example.com about this", "language": "en", "function": "send_email",
     "arguments": {"recipient": "ann@example.com", "subject": "the bottle"}, "meta": {"kind": "text"}},
    {"query": "what a nice day", "language": "en", "function": None, "arguments": {}, "meta": {"kind": "irrelevant"}},
]


def _columns(row: dict, n: int) -> dict:
    return {k: [row.get(k)] * n for k in ("function", "arguments", "language", "query", "meta")}


def _wrong_calls(row: dict) -> dict[str, str]:
    """One wrong completion of each kind that applies to the row."""
    f, args = row["function"], row["arguments"]
    if f is None:
        return {"call_when_none_fits": format_call("google_search", {"query": "nice day"})}
    out = {"wrong_function": format_call("amazon_shopping", {"product": "pizza"}) if f != "amazon_shopping" else "",
           "none_when_one_fits": format_call(None),
           "missing_argument": format_call(f, {k: v for k, v in list(args.items())[1:]}) if len(args) > 1 else "",
           "no_end_token": format_call(f, args).replace("<nexa_end>", ""),
           "text_after_end": format_call(f, args) + " and more <nexa_end>",
           "unparsable": format_call(f, args)[:12]}
    free = R._free_text(f, args)
    if free:
        name = next(k for k, v in args.items() if v == free[0])
        out["wrong_language"] = format_call(f, {**args, name: "披萨" if row["language"] == "en" else "pizza"})
        out["invented_argument"] = format_call(f, {**args, name: args[name] + "x"})
    return {k: v for k, v in out.items() if v}


def test_each_rule_and_the_environment_score_the_correct_call_above_each_kind_of_wrong_call():
    env = R.EnvironmentReward()
    fns = {**R.RULES, "environment": env}
    for row in ROWS:
        gold = format_call(row["function"], row["arguments"])
        for kind, wrong in _wrong_calls(row).items():
            texts = [gold, wrong]
            scores = {n: fn(texts, texts, **_columns(row, 2)) for n, fn in fns.items()}
            for name, (g, w) in scores.items():
                assert g is None or w is None or g >= w, (row["query"], kind, name, g, w)
            total = weighted_rewards({n: scores[n] for n in scores}, {**RULE_REWARDS, "environment": 0.5})
            assert total[0] > total[1], (row["query"], kind, scores)
            assert any(g is not None and (w is None or g > w) for g, w in scores.values()), (kind, scores)


def test_environment_feedback_refuses_what_the_device_refuses(tmp_path):
    config = tmp_path / "octopus.toml"
    config.write_text('[actions]\nallow_recipients = ["@example.com"]\n')
    env = R.EnvironmentReward(config)
    calls = [format_call("send_email", {"recipient": "ann@example.com", "subject": "hi"}),
             format_call("send_email", {"recipient": "eve@evil.org", "subject": "hi"}),  # not allowed
             format_call("send_email", {"recipient": "ann@example.com", "subject": "hi\nBcc: eve@evil.org"}),
             format_call("send_text_message", {"recipient": "ann", "message": "x" * 600}),  # too long an SMS
             format_call(None), "<nexa_0>(recipient=", "plain words"]
    assert env(calls, calls) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    # the rules alone accept the three the environment refuses: they are valid calls
    assert R.format_reward(calls, calls)[:4] == [1.0, 1.0, 1.0, 1.0]


def test_language_reward_judges_free_text_only():
    row = ROWS[1]
    texts = [format_call("instacart_shopping", {"item": "鸡蛋"}), format_call("instacart_shopping", {"item": "eggs"}),
             format_call("instacart_shopping", {"item": "鸡蛋 eggs"}), format_call(None)]
    assert R.language_reward(texts, texts, **_columns(row, 4)) == [1.0, 0.0, 0.0, None]


def test_weighted_rewards_treat_none_as_no_opinion_like_trl():
    total = weighted_rewards({"a": [1.0, None, None], "b": [0.5, 0.5, None]}, {"a": 2.0, "b": 1.0})
    assert total[:2].tolist() == [2.5, 0.5] and math.isnan(float(total[2]))


def test_group_advantages_match_trl():
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, 0.3, math.nan, 0.9, 0.1])
    G = 4
    advantages, std = group_advantages(rewards, G)
    # TRL 1.16 GRPOTrainer._generate_and_score_completions, multi_objective_aggregation="sum_then_normalize",
    # scale_rewards="group"
    mean = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G)
    trl_std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G)
    expected = torch.nan_to_num((rewards - mean) / (trl_std + 1e-4), nan=0.0)
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(std.repeat_interleave(G), trl_std, atol=1e-6)
    assert float(std[1]) == 0.0  # the all-2.0 group has zero spread: dropped by the stage


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_is_trls_dapo_loss(beta):
    """Our loss against TRL's own GRPOTrainer._compute_loss (loss_type="dapo"), run on a stand-in trainer whose
    log-prob function returns fixed values; old log-probs differ so both clip sides are active."""
    from trl import GRPOTrainer

    g = torch.Generator().manual_seed(0)
    B, C = 6, 5
    logps = -torch.rand(B, C, generator=g) * 3
    old = logps + (torch.rand(B, C, generator=g) - 0.5) * 0.8
    ref = logps + (torch.rand(B, C, generator=g) - 0.5) * 0.5
    mask = (torch.rand(B, C, generator=g) > 0.2).float()
    advantages = torch.randn(B, generator=g)
    policy = logps.clone().requires_grad_(True)

    accelerator = SimpleNamespace(num_processes=1, reduce=lambda t, reduction="sum": t, gather=lambda t: t,
                                  gather_for_metrics=lambda t: t, sync_gradients=True)
    stand_in = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (policy, torch.zeros(B, C), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, use_vllm=False, model=SimpleNamespace(training=True),
        accelerator=accelerator, current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False,
        aux_loss_enabled=False, _metrics={"train": __import__("collections").defaultdict(list)})
    inputs = {"prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1),
              "completion_ids": torch.zeros(B, C, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    trl_loss = GRPOTrainer._compute_loss(stand_in, None, inputs)
    trl_grad = torch.autograd.grad(trl_loss, policy)[0]

    ours_in = logps.clone().requires_grad_(True)
    ours = grpo_loss(ours_in, old, advantages, mask, mask.sum(), 0.2, 0.28, beta, ref)
    ours_grad = torch.autograd.grad(ours, ours_in)[0]
    assert torch.allclose(ours, trl_loss, atol=1e-6), (float(ours), float(trl_loss))
    assert torch.allclose(ours_grad, trl_grad, atol=1e-6)


def test_preference_pairs_cover_every_kind_and_never_prefer_a_call_to_itself():
    rows = ROWS * 3 + [{**ROWS[0], "query": "order this", "function": "pet_care", "arguments": {"pet": "cat"},
                        "meta": {"kind": "ambiguous", "template": "t1", "objects": ["cat"]}},
                       {**ROWS[0], "language": "zh", "query": "点这个", "arguments": {"dish": "披萨"}},
                       {**ROWS[1], "language": "en", "query": "buy this", "arguments": {"item": "eggs"}}]
    negatives = [{"row": ROWS[0], "completion": format_call("pet_care", {"pet": "cat"})}]
    pairs = build_pairs(rows, 70, seed=0, on_policy=negatives)
    kinds = {p["kind"] for p in pairs}
    assert kinds == set(WRONG_KINDS), set(WRONG_KINDS) - kinds
    for p in pairs:
        assert p["chosen"] != p["rejected"] and "<nexa" not in p["chosen"] + p["rejected"]
        assert p["prompt"].startswith("Request: ") and "Objects in the photo:" in p["prompt"]
    assert gold_text(ROWS[0]) == 'doordash_delivery(dish="pizza")' and gold_text(ROWS[3]) == "none"


def test_the_reward_models_prompt_names_each_object_in_both_languages():
    # a Chinese call names the object in Chinese: the prompt must carry that name for the reward model to match
    prompt = R.describe_request("帮我买这个", ["eggs", "fried_chicken", "something_new"])
    assert prompt.splitlines() == ["Request: 帮我买这个",
                                   "Objects in the photo: eggs (鸡蛋), fried chicken (炸鸡), something_new", "Call: "]
    assert R.describe_request("buy this", None).splitlines()[1] == "Objects in the photo: unknown"


def test_judge_scores_calls_through_a_real_endpoint_with_retries(monkeypatch):
    monkeypatch.setenv("OCTOPUS_LLM_API_KEY", "sekrit")
    answers = ["0.9", None, "score: 0.2", "not a number", "nope", "nope"]  # None: an HTTP 500
    with ChatServer(lambda body: answers.pop(0)) as server:
        judge = R.JudgeReward(server.url, "judge-model", timeout=5, retries=1)
        texts = [format_call("doordash_delivery", {"dish": "pizza"}), format_call(None), format_call(None)]
        scores = judge(texts, texts, **_columns(ROWS[0], 3))
    assert scores == [0.9, 0.2, None]  # the 500 was retried; two unreadable answers give no opinion
    assert judge.failures == 1
    path, auth, body = server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sekrit" and body["model"] == "judge-model"
    assert "doordash_delivery(dish=\"pizza\")" in body["messages"][1]["content"]
    assert "pizza" in body["messages"][1]["content"] and "pet_care(" in body["messages"][0]["content"]


def test_unreachable_judge_gives_no_opinion_not_a_crash():
    judge = R.JudgeReward("http://127.0.0.1:9/v1", timeout=1, retries=0)
    texts = [format_call(None)]
    assert judge(texts, texts, **_columns(ROWS[3], 1)) == [None]


def test_stage3_settings_are_validated_and_reachable_with_set():
    from octopus.training.pipeline import apply_overrides

    prof = profile("tiny")
    apply_overrides(prof, ('stage3_rl.rl.rewards={"function": 1, "random": 0.5}', "stage3_rl.rl.group_size=8",
                           "stage3_rl.lr=3e-4"))
    rl_stage = prof.stages[2]
    assert rl_stage.rl.rewards == {"function": 1, "random": 0.5} and rl_stage.rl.group_size == 8
    assert rl_stage.lr == 3e-4
    for bad, message in (('stage3_rl.rl.rewards={"vibes": 1}', "unknown rewards"),
                         ("stage3_rl.rl.group_size=1", "at least 2"), ("stage3_rl.rl.nope=1", "unknown key"),
                         ("stage3_rl.rl.diagnose_every=0", "diagnose_every must be at least 1"),
                         ("stage3_rl.rl.irrelevant_share=1.5", "must lie in"),
                         ("stage3_rl.rl.keep_margin=-1", "keep_margin must be at least 0"),
                         ('stage3_rl.rl.rewards={"judge": 1}', "judge_url")):
        with pytest.raises(ValueError, match=message):
            apply_overrides(profile("tiny"), (bad,))


def test_a_later_rl_step_is_kept_only_when_its_probe_gain_clears_the_margin():
    from octopus.training.rl import beats_kept

    start = {"function": 0.9792, "exact": 0.8333}  # 94 and 80 of 96 probe rows (probe_accuracy rounds to 4 places)
    one_row = {"function": 0.9792, "exact": 0.8438}  # one more exact call: what two whole builds kept
    assert beats_kept(start, None, 96, 2)  # step 0 is always kept first
    assert not beats_kept(one_row, start, 96, 2)
    assert beats_kept(one_row, start, 96, 1)
    assert beats_kept({"function": 0.9896, "exact": 0.8438}, start, 96, 2)  # one row now right twice over
    assert beats_kept({"function": 0.9792, "exact": 0.8542}, start, 96, 2)  # two more exact calls
    assert not beats_kept({"function": 0.9688, "exact": 0.8542}, start, 96, 2)  # a call gained, a function lost
    assert not beats_kept(start, start, 96, 0)  # a tie never replaces the step kept, whatever the margin


def test_train_cli_rejects_a_bad_stage3_setting_in_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([str(Path(sys.executable).parent / "octopus"), "train", "stage3", "--profile", "tiny",
                             "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set",
                             'stage3_rl.rl.rewards={"vibes": 1}'], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "unknown rewards" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _sharp_tiny_agent():
    """A tiny random agent with weights far from a fresh init's: a fresh tiny LM repeats one token whatever it
    reads, so neither positions nor pads would show (checked: at 0.3, dropping either the position ids or the
    decode's attention mask fails the sampling test below)."""
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    agent = OctopusAgent.build(tiny()).eval()
    with torch.no_grad():
        for p in agent.lm.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return agent


def test_one_batch_samples_each_prompt_as_it_would_alone(photo):
    """Stage 3 samples every prompt's group in one left-padded batch; each prompt's completions must be what it
    samples alone (near-greedy temperature: padding may not shift a row's positions or let it see the pads)."""
    from octopus.training.rl import sample_groups

    tiny_agent = _sharp_tiny_agent()
    queries = ["order this", "email ann@example.com that the pizza is here, thanks a lot", "帮我处理一下这个"]
    prompts = [tiny_agent.encode_prompt(q) for q in queries]
    assert len({len(p) for p in prompts}) == 3  # different lengths: the batch pads
    with torch.no_grad():
        embeds = [tiny_agent.image_embeds(tiny_agent.pixels(photo.rotate(90 * i, expand=True))) for i in range(3)]

    def sample(ps, es, seed=0):
        return sample_groups(tiny_agent, ps, es, 2, 1e-4, 12, torch.Generator().manual_seed(seed))

    together = sample(prompts, embeds)
    alone = [sample([p], [e])[0] for p, e in zip(prompts, embeds)]
    assert together == alone
    assert len(set(map(str, alone))) > 1  # the prompts' images and words make a difference
    first = set(tiny_agent.tokens.first_token_ids)
    for group in together:
        assert len(group) == 2
        for completion in group:
            assert completion[0] in first and 0 < len(completion) <= 12
            assert tiny_agent.tokens.end_id not in completion[:-1]  # nothing is appended after the end
    hot = sample(prompts, embeds, seed=1)  # at temperature 1e-4 the seed changes nothing ...
    assert hot == together
    warm = sample_groups(tiny_agent, prompts, embeds, 4, 1.0, 12, torch.Generator().manual_seed(0))
    assert any(len(set(map(tuple, g))) > 1 for g in warm)  # ... at 1.0 a group's samples differ


def test_batched_greedy_calls_are_what_the_agent_generates_one_at_a_time(photo, tmp_path):
    """The reward model's on-policy negatives are the SFT model's greedy calls, decoded in batches: each must be
    what `agent.generate` writes for its row alone (its reject bias and argument constraint included)."""
    from octopus.training.rl import greedy_calls, sft_calls

    agent = _sharp_tiny_agent()
    images = []
    for i in range(3):
        images.append(tmp_path / f"{i}.jpg")
        photo.rotate(90 * i, expand=True).save(images[-1])
    queries = ["email ann@example.com that the pizza is here", "order this", "帮我处理一下这个", "给李雷发短信说我到了"]
    pairs = [(images[i % 3], q) for i, q in enumerate(queries)]
    for bias in ({}, {"zh": 50.0}):
        agent.reject_bias = bias
        alone = [agent.generate(image, query, max_new_tokens=20).raw for image, query in pairs]
        assert greedy_calls(agent, [i for i, _ in pairs], [q for _, q in pairs], max_new_tokens=20) == alone
        assert len(set(alone)) > 1
    assert all(a.startswith(agent.tokenizer.convert_ids_to_tokens(agent.tokens.first_token_ids[-1]))
               for a in alone[2:])  # the bias took the Chinese requests to "no function"
    agent.reject_bias = {}
    rows = [{"image": str(i), "query": q} for i, q in pairs]
    assert [c["completion"] for c in sft_calls(agent, rows, progress=False, batch_size=3)] == [
        agent.generate(i, q).raw for i, q in pairs]


def test_a_groups_prompt_runs_once_with_the_same_logits_and_gradients(photo):
    """GRPO's policy pass runs each prompt once for its G completions (`prompt_groups`): the logits at the
    completion tokens and the LM's gradients must be those of running every row whole, prompts of different
    lengths, completions of different lengths, a group of one."""
    from octopus.training.datasets import IGNORE

    agent = _sharp_tiny_agent()
    queries = ["order this", "email ann@example.com that the pizza is here", "帮我处理一下这个"]
    groups = [[[5, 9, 2], [5, 7], [6, 3, 3, 8]], [[4, 1], [4, 1]], [[9]]]
    rows, embeds = [], []
    with torch.no_grad():
        for i, (query, group) in enumerate(zip(queries, groups)):
            image = agent.image_embeds(agent.pixels(photo.rotate(90 * i, expand=True)))
            for completion in group:
                rows.append((agent.encode_prompt(query), completion))
                embeds.append(image)
    width = max(len(p) + len(c) for p, c in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        input_ids[i, :len(p) + len(c)], mask[i, :len(p) + len(c)] = torch.tensor(p + c), 1
        labels[i, len(p):len(p) + len(c)] = torch.tensor(c)
    image_embeds = torch.cat(embeds)
    results = {}
    for grouped in (False, True):
        agent.zero_grad()
        out = agent(input_ids, image_embeds=image_embeds, attention_mask=mask, labels=labels, labelled_only=True,
                    prompt_groups=grouped)
        torch.nn.functional.cross_entropy(out.logits, out.targets).backward()
        grads = {n: p.grad.clone() for n, p in agent.lm.named_parameters() if p.grad is not None}
        results[grouped] = (out.logits.detach(), out.targets, grads)
    (whole, targets, grads), (once, grouped_targets, grouped_grads) = results[False], results[True]
    assert torch.equal(targets, grouped_targets) and len(targets) == sum(len(c) for g in groups for c in g)
    torch.testing.assert_close(once, whole, atol=1e-4, rtol=1e-4)
    assert grads.keys() == grouped_grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grouped_grads[name], grads[name], atol=1e-4, rtol=1e-3, msg=name)
    with pytest.raises(ValueError, match="contiguous"):
        agent(input_ids, image_embeds=image_embeds, labels=torch.full_like(labels, IGNORE), labelled_only=True,
              prompt_groups=True)


def test_profiles_are_a_registry_and_stages_are_found_by_kind():
    from octopus.training.stages import PROFILES, STAGE_KINDS

    for name in PROFILES:
        prof = profile(name)
        assert prof.name == name
        assert [prof.stages[prof.index(kind)].kind for kind in STAGE_KINDS.values()] == list(STAGE_KINDS.values())
    with pytest.raises(ValueError, match="choose one of tiny, quick, full"):
        profile("huge")
    with pytest.raises(ValueError, match="has no rl stage"):
        prof = profile("tiny")
        prof.stages = prof.stages[:2]
        prof.index("rl")


def test_reward_model_training_is_seeded_and_checkpointing_changes_no_loss(small_data, tmp_path):
    """The quick reward model trains its top layers only; activation checkpointing (TRL's default) made backward
    run through the frozen ones too (twice the time, bench/results/reward_model_speed.md). Off, the losses are
    the same, and the same seed gives the same reward model (its score head starts at random)."""
    from octopus.training.reward_model import train_reward_model

    lm = profile("tiny").agent.lm
    losses = {}
    for name, checkpointing in (("on", True), ("off", False), ("off_again", False)):
        out = train_reward_model(lm, small_data, tmp_path / name, pairs=48, steps=4, batch_size=8, lr=1e-3, seed=3,
                                 train_layers=1, activation_checkpointing=checkpointing)
        report = json.loads((out / "reward_model.json").read_text())
        assert report["train_seconds"] > 0
        losses[name] = [h["loss"] for h in report["history"]]
    assert len(losses["off"]) >= 2 and losses["off"] == losses["off_again"]
    assert losses["on"] == pytest.approx(losses["off"], abs=1e-4)
