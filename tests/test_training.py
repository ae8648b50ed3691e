"""The tiny profile end to end: stages change only what they declare, resume after a kill, eval and ask."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from octopus.model.agent import OctopusAgent  # noqa: E402
from octopus.training.pipeline import train  # noqa: E402

OCTOPUS = str(Path(sys.executable).parent / "octopus")


@pytest.fixture(scope="module")
def data_dir(small_data) -> Path:
    return small_data


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tinyrun")
    train("all", "tiny", data_dir, out)
    return out


def _state(agent: OctopusAgent, component: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in getattr(agent, component).state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_every_stage_wrote_its_outputs(run_dir):
    for name in ("init", "stage1_alignment", "stage2_functional"):
        assert (run_dir / name / "agent" / "config.json").is_file()
    for name in ("stage1_alignment", "stage2_functional"):
        losses = json.loads((run_dir / name / "losses.json").read_text())
        assert losses["steps"] > 0 and all("loss" in h for h in losses["history"])
        assert (run_dir / name / "losses.png").stat().st_size > 1000
        assert not (run_dir / name / "checkpoints").exists()
    assert (run_dir / "stage0_clip" / "clip.pt").is_file()
    pipeline = json.loads((run_dir / "pipeline.json").read_text())
    assert {"stage0_seconds", "stage0_zero_shot", "stage1_alignment_seconds_last_run"} <= set(pipeline)
    assert (run_dir / "agent" / "config.json").is_file()


def test_stage1_trains_only_the_projector(run_dir):
    init = OctopusAgent.load(run_dir / "init" / "agent")
    stage1 = OctopusAgent.load(run_dir / "stage1_alignment" / "agent")
    assert not _changed(_state(init, "vision_encoder"), _state(stage1, "vision_encoder"))
    assert not _changed(_state(init, "lm"), _state(stage1, "lm"))
    assert _changed(_state(init, "projector"), _state(stage1, "projector")) == set(_state(init, "projector"))


def test_stage2_trains_projector_lora_targets_and_new_token_rows_only(run_dir):
    stage1 = OctopusAgent.load(run_dir / "stage1_alignment" / "agent")
    stage2 = OctopusAgent.load(run_dir / "stage2_functional" / "agent")
    assert not _changed(_state(stage1, "vision_encoder"), _state(stage2, "vision_encoder"))
    assert _changed(_state(stage1, "projector"), _state(stage2, "projector"))
    before, after = _state(stage1, "lm"), _state(stage2, "lm")
    changed = _changed(before, after)
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
    embed = "model.embed_tokens.weight"
    assert changed and all(k.split(".")[-2] in lora_targets for k in changed - {embed, "lm_head.weight"})
    assert not any("norm" in k for k in changed)
    new_rows = [*stage1.tokens.function_ids, stage1.tokens.no_function_id, stage1.tokens.end_id]
    rows_changed = (before[embed] != after[embed]).any(1).nonzero().flatten().tolist()
    assert rows_changed and set(rows_changed) <= set(new_rows)


def test_stage3_trains_only_the_lm_lora_and_token_rows(run_dir):
    stage2 = OctopusAgent.load(run_dir / "stage2_functional" / "agent")
    stage3 = OctopusAgent.load(run_dir / "stage3_rl" / "agent")
    assert not _changed(_state(stage2, "vision_encoder"), _state(stage3, "vision_encoder"))
    assert not _changed(_state(stage2, "projector"), _state(stage3, "projector"))
    changed = _changed(_state(stage2, "lm"), _state(stage3, "lm"))
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
    embed = "model.embed_tokens.weight"
    assert changed and all(k.split(".")[-2] in lora_targets for k in changed - {embed, "lm_head.weight"})
    assert not any("norm" in k for k in changed)
    final = OctopusAgent.load(run_dir / "agent")
    assert not _changed(_state(stage3, "lm"), _state(final, "lm"))  # `all` ends with stage 3's agent


def test_stage3_logs_rewards_probe_and_reward_model_accuracy(run_dir):
    losses = json.loads((run_dir / "stage3_rl" / "losses.json").read_text())
    steps = [h for h in losses["history"] if "reward" in h]
    probes = [h for h in losses["history"] if "probe" in h]
    assert len(steps) == losses["steps"] == 4
    assert {"format", "function", "arguments", "end", "language", "environment", "reward_model"} == set(
        steps[0]["rewards"])
    assert all("zero_spread_groups" in h for h in steps)
    # where each step's time went, in order: sampling, rewards, the update (none where every group had no spread)
    assert all(set(h["seconds"]) == {"sampling", "rewards", "update"} and min(h["seconds"].values()) >= 0
               and h["seconds"]["sampling"] > 0 for h in steps)
    # the diagnostics every diagnose_every-th step (5) and the last: the reward model on the gold calls, and the
    # KL to the reference where the step updated
    assert [h["step"] for h in steps if "reward_model_gold" in h] == [4]
    assert {h["step"] for h in steps if "kl" in h} <= {4}
    assert probes[0]["step"] == 0 and probes[-1]["step"] == 4  # step 0 is the SFT model itself
    assert losses["mining"]["candidates"] == 64 and losses["best"]["step"] is not None
    assert (run_dir / "stage3_rl" / "losses.png").stat().st_size > 1000
    assert not (run_dir / "stage3_rl" / "checkpoints").exists()
    report = json.loads((run_dir / "reward_model" / "reward_model.json").read_text())
    assert report["pairs"] > 0 and 0 <= report["accuracy"] <= 1 and report["by_kind"]
    assert set(report["by_language"]) == {"en", "zh"}
    pipeline = json.loads((run_dir / "pipeline.json").read_text())
    assert {"stage3_rl_seconds_last_run", "reward_model_seconds"} <= set(pipeline)


def test_the_reward_model_scores_each_distinct_text_once_and_the_same_as_alone(run_dir):
    """A GRPO group's samples are often the same call: the reward model scores each distinct text once, and a
    text scores the same in a batch with repeats and padding as alone."""
    from octopus.training.reward_model import RewardModel

    rm = RewardModel(run_dir / "reward_model", batch_size=2)
    texts = ["Request: order this\nCall: doordash_delivery(dish=\"pizza\")", "Request: hi\nCall: none()",
             "Request: order this\nCall: doordash_delivery(dish=\"pizza\")", "Request: email ann about lunch, "
             "she is late\nCall: send_email(recipient=\"ann\", subject=\"lunch\")"]
    calls = []
    forward = rm.model.forward
    rm.model.forward = lambda *a, **k: calls.append(len(k["input_ids"])) or forward(*a, **k)
    together = rm.scores(texts)
    assert calls == [2, 1]  # three distinct texts, batches of two
    rm.model.forward = forward
    alone = [rm.scores([t])[0] for t in texts]
    assert together == pytest.approx(alone, abs=1e-4) and together[0] == together[2]
    assert len(set(together)) == 3


def test_a_trained_reward_model_is_reused_without_mining_its_negatives(data_dir, run_dir, tmp_path):
    """The SFT model's wrong calls feed only a reward model still to be trained: with one in place (a rerun of
    stage 3, a resume), training it again is skipped before they are decoded (3.4 min on the quick profile)."""
    import shutil

    from octopus.training.pipeline import train_reward
    from octopus.training.stages import profile

    out = tmp_path / "run"
    for name in ("stage2_functional", "reward_model"):
        shutil.copytree(run_dir / name, out / name)
    before = (out / "reward_model" / "reward_model.json").read_bytes()
    assert train_reward(profile("tiny"), data_dir, out, out / "stage2_functional" / "agent") == out / "reward_model"
    assert not (out / "stage3_rl").exists()  # nothing mined, nothing decoded
    assert (out / "reward_model" / "reward_model.json").read_bytes() == before


def test_stage3_prompts_hold_the_irrelevant_share(data_dir, run_dir, tmp_path):
    """Stage 2 declines irrelevant requests, so few are hard; `rl.irrelevant_share` keeps them among the prompts
    (without them, GRPO drifted the quick model towards calling a function for them)."""
    from dataclasses import replace

    from octopus.training.rl import mine_prompts
    from octopus.training.stages import profile

    stage = profile("tiny").stages[2]
    agent = OctopusAgent.load(run_dir / "stage2_functional" / "agent")
    counts = {}
    for share in (0.0, 0.3):
        stage.rl = replace(stage.rl, steps=50, irrelevant_share=share)
        mined = mine_prompts(agent, stage, data_dir, tmp_path / "cache", progress=False, with_on_policy=False)
        assert len(mined["schedule"]) == 50 * stage.batch_size
        counts[share] = sum(r["function"] is None for r in mined["schedule"])
    assert 0.2 * 200 <= counts[0.3] <= 0.45 * 200 and counts[0.3] > counts[0.0] + 20


def test_resume_after_kill_continues_from_the_last_checkpoint(data_dir, run_dir, tmp_path):
    import shutil

    out = tmp_path / "run"
    for name in ("init", "stage0_clip", "stage1_alignment"):
        shutil.copytree(run_dir / name, out / name)
    command = [OCTOPUS, "-v", "train", "stage2", "--profile", "tiny", "--data", str(data_dir), "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "stage2_functional" / "checkpoints" / "step_000004" / "meta.json"
    deadline = time.time() + 240
    while not marker.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert marker.is_file(), "no checkpoint was written before the kill"
    assert not (out / "stage2_functional" / "agent").exists()
    # the checkpoint holds what stage 2 trains (the projector, LoRA), not the frozen image tower or LM weights
    from safetensors import safe_open

    with safe_open(marker.parent / "model.safetensors", "pt") as f:
        saved = set(f.keys())
    assert any("lora_A" in k for k in saved) and any(k.startswith("projector.") for k in saved)
    assert not any(k.startswith("vision.") or k.endswith("base_layer.weight") for k in saved), sorted(saved)[:5]
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming from" in second.stderr
    history = json.loads((out / "stage2_functional" / "losses.json").read_text())["history"]
    steps = [h["step"] for h in history]
    assert steps == list(range(1, len(steps) + 1))  # nothing repeated, nothing lost
    reference = json.loads((run_dir / "stage2_functional" / "losses.json").read_text())["history"]
    assert len(steps) == len(reference)
    # and it trained on from the checkpoint's weights: the same agent as the run that was never stopped
    resumed = OctopusAgent.load(out / "stage2_functional" / "agent").state_dict()
    clean = OctopusAgent.load(run_dir / "stage2_functional" / "agent").state_dict()
    assert resumed.keys() == clean.keys()
    for key, value in clean.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_eval_and_ask_on_a_trained_agent(data_dir, run_dir, tmp_path):
    preds = tmp_path / "pred.jsonl"
    out = subprocess.run([OCTOPUS, "eval", "--model", str(run_dir / "agent"), "--data", str(data_dir / "test.jsonl"),
                          "--json", "--out", str(preds), "--limit", "12"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["rows"] == 12 and 0 <= metrics["function_accuracy"] <= 1
    assert set(metrics["function_accuracy_by_language"]) == {"en", "zh"}
    assert {"p50", "p95"} <= set(metrics["latency_ms"]) and metrics["latency_ms"]["p50"] > 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 12 and {"predicted_function", "predicted_arguments", "raw", "query"} <= set(rows[0])
    image = data_dir / json.loads((data_dir / "test.jsonl").read_text().splitlines()[0])["image"]
    ask = subprocess.run([OCTOPUS, "ask", "--model", str(run_dir / "agent"), "--image", str(image), "--query",
                          "order this for me", "--json"], capture_output=True, text=True)
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert set(answer) == {"function", "arguments", "raw", "action", "error", "timings_ms"}
    assert answer["raw"].startswith("<nexa_")


@pytest.mark.parametrize("args, message", [
    (["--model", "MODEL", "--image", "/no/such.jpg", "--query", "hi"], "no image file"),
    (["--model", "/no/model", "--image", "IMAGE", "--query", "hi"], "no model folder"),
    (["--model", "MODEL", "--image", "NOTIMAGE", "--query", "hi"], "not a readable image"),
])
def test_ask_errors_are_one_line(run_dir, data_dir, tmp_path, args, message):
    (tmp_path / "notes.jpg").write_text("not a picture")
    image = next((data_dir / "images" / "test").glob("*.jpg"))
    args = [a.replace("MODEL", str(run_dir / "agent")).replace("NOTIMAGE", str(tmp_path / "notes.jpg"))
            .replace("IMAGE", str(image)) for a in args]
    out = subprocess.run([OCTOPUS, "ask", *args], capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_demo_untrained_says_so_plainly(tmp_path):
    out = subprocess.run([OCTOPUS, "demo", "--untrained"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "UNTRAINED" in out.stdout and "random" in out.stdout
    from octopus.training.demo import examples

    assert out.stdout.count("\ncall:  ") == len(examples())  # every bundled example answered
    assert "query: 帮我照顾一下它" in out.stdout and "octopus ask --model" in out.stdout
    assert not (tmp_path / "runs").exists()  # the untrained demo builds nothing


def test_a_stage2_soup_trains_each_seed_and_writes_the_mean_of_their_weights(data_dir, run_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from octopus.training.stages import StageConfig

    out = tmp_path / "run"
    for name in ("init", "stage0_clip", "stage1_alignment"):
        shutil.copytree(run_dir / name, out / name)
    soup = train("stage2", "tiny", data_dir, out, overrides=("stage2_functional.soup=2",))
    stage = out / "stage2_functional"
    assert soup == stage / "agent"
    seeds = [stage / f"seed_{k}" / "agent" for k in range(2)]
    assert [json.loads((s.parent / "stage.json").read_text())["seed"] for s in seeds] == [0, 1]
    # seed 0 is the plain stage 2 of the same run (the tiny profile's seed is 0), seed 1 another agent
    plain = load_file(run_dir / "stage2_functional" / "agent" / "lm" / "model.safetensors")
    for name in ("vision_projector.safetensors", "lm/model.safetensors"):
        a, b, mean = (load_file(p / name) for p in (*seeds, soup))
        differ = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
        assert differ, name  # the seeds trained apart (stage 2 trains the projector and the LM's LoRA)
        for k in a:
            expected = (a[k].double() + b[k].double()) / 2 if a[k].is_floating_point() else a[k]
            torch.testing.assert_close(mean[k].double(), expected.double(), rtol=0, atol=1e-6, msg=k)
    seed0 = load_file(seeds[0] / "lm" / "model.safetensors")
    assert all(torch.allclose(seed0[k], v, rtol=1e-4, atol=1e-5) for k, v in plain.items())
    assert json.loads((stage / "stage.json").read_text())["soup"] == 2
    OctopusAgent.load(soup)  # a whole agent
    before = (soup / "lm" / "model.safetensors").stat().st_mtime_ns
    assert train("stage2", "tiny", data_dir, out, overrides=("stage2_functional.soup=2",)) == soup
    assert (soup / "lm" / "model.safetensors").stat().st_mtime_ns == before  # done: skipped, not trained again
    with pytest.raises(ValueError, match="soup"):
        StageConfig(name="s", kind="alignment", train={"vision_encoder": "frozen", "projector": "full",
                                                       "lm": "frozen"}, data="captions.csv", soup=2)
