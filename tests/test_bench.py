"""The benches write the README's result tables: the block between its markers is replaced, nothing else."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from accuracy import replace_readme_block  # noqa: E402


def test_a_readme_block_is_rewritten_and_the_rest_kept(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\nintro\n<!-- bench:accuracy -->\nold | table\n<!-- /bench:accuracy -->\ntail 1%\n")
    replace_readme_block("accuracy", "| new | 77.5% |\n", readme)
    replace_readme_block("accuracy", "| newer | 78.0% |", readme)  # idempotent in shape
    assert readme.read_text() == ("# t\nintro\n<!-- bench:accuracy -->\n| newer | 78.0% |\n<!-- /bench:accuracy -->"
                                  "\ntail 1%\n")
    with pytest.raises(SystemExit, match="no <!-- bench:latency -->"):
        replace_readme_block("latency", "x", readme)


def test_the_readme_has_both_blocks():
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for name in ("accuracy", "latency"):
        assert f"<!-- bench:{name} -->" in text and f"<!-- /bench:{name} -->" in text


def _row(template: str, kind: str) -> dict:
    return {"language": "zh", "meta": {"template": template, "kind": kind}}


def test_the_reject_bias_rule_declines_most_within_the_allowed_cost():
    from reject_bias import choose, rates

    # two functions and no-function (last); gold index 2 for irrelevant rows, 0 for fitting ones
    rows = [_row("a", "irrelevant"), _row("b", "irrelevant"), _row("c", "text"), _row("d", "text")]
    logprobs = [[-0.6, -3.0, -1.0],   # irrelevant, no-function 0.4 behind: +0.5 declines it
                [-0.2, -3.0, -2.2],   # irrelevant, 2.0 behind
                [-0.1, -3.0, -2.0],   # fits, no-function 1.9 behind: a bias past 1.9 loses it
                [-0.1, -3.0, -5.0]]   # fits, safe
    gold = [2, 2, 0, 0]
    assert rates(rows, logprobs, gold, 0.0) == {"irrelevant": 0.0, "fits": 1.0,
                                                "rows": {"irrelevant": 2, "fits": 2}}
    assert choose(rows, logprobs, gold, max_fit_drop=0.0) == 0.5  # the first step that declines; 2.0+ costs a fit
    assert choose(rows, logprobs, gold, max_fit_drop=0.5) == 2.25  # a fit may go: both declined, smallest such
    assert choose(rows[2:], logprobs[2:], gold[2:], max_fit_drop=0.0) == 0.0  # nothing to decline: no bias


def test_the_reject_bias_cross_validation_never_judges_a_wording_by_a_bias_chosen_on_it():
    from reject_bias import cross_validate, fold_of

    templates = [f"zh/irrelevant/{i}" for i in range(12)]
    rows = [_row(t, "irrelevant") for t in templates] + [_row(f"zh/text/{i}", "text") for i in range(12)]
    # each irrelevant wording is declined only by a bias of its own size: a choice made on other wordings can
    # not be tuned to it
    logprobs = [[-0.1, -5.0, -0.05 - 0.25 * (i + 1)] for i in range(12)] + [[-0.1, -5.0, -9.0]] * 12
    gold = [2] * 12 + [0] * 12
    cv = cross_validate(rows, logprobs, gold, folds=3, max_fit_drop=0.0)
    assert {f["fold"] for f in cv["folds"]} == {fold_of(t, 3) for t in templates} | {fold_of(r["meta"]["template"], 3)
                                                                                      for r in rows[12:]}
    for fold in cv["folds"]:  # the bias chosen without a fold's wordings is the largest that declines all *others*
        others = [i for i, t in enumerate(templates) if fold_of(t, 3) != fold["fold"]]
        assert fold["bias"] == min(4.0, 0.25 * (max(others) + 1))
    assert cv["at_0"]["irrelevant"] == 0.0 and cv["cross_validated"]["fits"] == 1.0
    assert 0.0 < cv["cross_validated"]["irrelevant"] < 1.0  # honest: the largest wording's own bias is unseen


def test_a_reject_bias_ships_only_where_it_paid_on_unseen_wordings():
    from reject_bias import pack_flags, recommend

    paid = {"at_0": {"irrelevant": 0.65, "fits": 0.897}, "cross_validated": {"irrelevant": 0.82, "fits": 0.886}}
    unpaid = {"at_0": {"irrelevant": 0.987, "fits": 0.95}, "cross_validated": {"irrelevant": 0.987, "fits": 0.945}}
    assert recommend(paid, 1.25, irrelevant_share=0.1) == 1.25  # +17 points on 10% beat -1.1 on 90%
    assert recommend(paid, 1.25, irrelevant_share=0.05) == 0.0  # not when 19 of 20 requests fit a function
    assert recommend(unpaid, 1.25, irrelevant_share=0.1) == 0.0
    result = {"languages": {"zh": {"recommended": 1.25}, "en": {"recommended": 0.0}}}
    assert pack_flags(result) == ["--reject-bias=zh=1.25"]


def test_the_card_writes_the_reward_model_as_part_of_stage_3s_time_not_beside_it():
    from card import wall_times

    seconds = {"stage2_functional_seconds_last_run": 1357.3, "reward_model_seconds": 476.7,
               "stage3_rl_seconds_last_run": 1463.3}  # pipeline.json: stage 3's time includes its reward model
    assert wall_times(seconds) == "stage2_functional 22.6 min, stage3_rl 24.4 min (its reward model 7.9 of it)"
    assert wall_times({"reward_model_seconds": 476.7}) == "reward_model 7.9 min"  # `octopus train reward` alone


def _latency_bench(tmp_path, onnx: Path, photo) -> list[str]:
    import json

    photo.save(tmp_path / "p.jpg")
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps({"image": "p.jpg", "query": "order this for me", "language": "en"}) + "\n")
    bench = Path(__file__).parent.parent / "bench" / "latency.py"
    return [sys.executable, str(bench), "--model", str(onnx.parent / "agent"), "--onnx", str(onnx),
            "--data", str(data), "--rows", "1", "--name", str(tmp_path / "lat")]


def test_the_latency_bench_refuses_a_bad_compare_in_one_line(tmp_path, photo):
    import subprocess

    for bad in ("nolabel", f"label={tmp_path / 'missing'}"):
        done = subprocess.run([*_latency_bench(tmp_path, tmp_path, photo), "--compare", bad], capture_output=True,
                              text=True)
        assert done.returncode == 2 and "--compare takes LABEL=ONNX_DIR" in done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "lat.json").exists()


@pytest.mark.slow  # six processes (torch, ONNX fp32, int8 twice, the RAG prompt, the compared export): ~60 s
def test_the_latency_bench_puts_another_export_beside_the_default_in_one_run(tiny_onnx, tmp_path, photo):
    import json
    import subprocess

    base = _latency_bench(tmp_path, tiny_onnx, photo)
    done = subprocess.run([*base, "--compare", f"same graphs={tiny_onnx}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "lat.json").read_text())["results"]
    assert [r["backend"] for r in results] == ["torch_fp32", "onnx_fp32", "onnx_int8_single", "onnx_int8",
                                               "rag_baseline", "same graphs"]
    assert results[-1]["prompt_tokens_mean"] == results[3]["prompt_tokens_mean"]
    assert results[3]["decode_passes_mean"] <= results[2]["decode_passes_mean"]  # drafts never add passes
    assert "| same graphs |" in (tmp_path / "lat.md").read_text()
    assert (tmp_path / "lat.png").stat().st_size > 0


def test_eval_compare_over_the_test_split_alone_leaves_out_the_rows_of_other_splits(tmp_path):
    import json
    import subprocess

    def write(folder: Path, zh: float) -> None:
        folder.mkdir()
        langs = {"en": 0.9, "zh": zh}
        (folder / "test.json").write_text(json.dumps({
            "rows": 4444, "function_accuracy": 0.9, "function_accuracy_by_language": langs,
            "argument_exact_match_by_language": langs, "argument_exact_match_by_kind": {"text_decides": langs},
            "image_rows_by_object_split": {"image_decides/held_out_objects": langs},
            "function_accuracy_by_kind": {"text_decides": langs}, "irrelevant_rejection_by_language": langs,
            "image_swap": {"rows": 960, "follow_rate": 0.95}, "latency_ms": {"p50": 130.0}}))

    write(tmp_path / "a", 0.936)
    write(tmp_path / "b", 0.9496)
    script = Path(__file__).parent.parent / "bench" / "eval_compare.py"
    done = subprocess.run([sys.executable, str(script), "--splits", "test", "--name", str(tmp_path / "cmp"),
                           f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "cmp.md").read_text()
    assert table.startswith("| int8, 4444 rows a split | a | b |")
    assert "| test function EN / ZH | 90.0 / 93.6 | 90.0 / 95.0 |" in table
    assert "| image swap follows | 95.0 (960) | 95.0 (960) |" in table
    assert "trained objects" not in table and "Noto" not in table and "all four splits" not in table
    done = subprocess.run([sys.executable, str(script), "--name", str(tmp_path / "all"), f"a={tmp_path / 'a'}"],
                          capture_output=True, text=True)  # all four splits asked for, one held
    assert done.returncode != 0 and "has no test_trained_objects.json" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "all.md").exists()


def test_the_request_memory_bench_measures_loads_and_requests_of_each_export(tiny_onnx, tmp_path, photo):
    import json
    import subprocess

    photo.save(tmp_path / "p.jpg")
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"image": "p.jpg", "query": q, "language": "en"}) + "\n"
                            for q in ("order this for me", "what is this")))
    bench = Path(__file__).parent.parent / "bench" / "request_memory.py"
    done = subprocess.run([sys.executable, str(bench), "--data", str(data), "--rows", "2", "--name",
                           str(tmp_path / "mem"), f"tiny={tiny_onnx}", f"again={tiny_onnx}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "mem.json").read_text())
    for label in ("tiny", "again"):
        r = report[label]
        assert r["rows"] == 2 and any(k.startswith("after decoder_model_merged") for k in r["load_mb"])
        assert r["load_mb"]["start"] < r["load_mb"]["loaded"] <= r["load_mb"]["load peak"]
        assert 0 <= r["request_working_mb"]["median"] <= r["request_working_mb"]["max"]
        assert r["request_peak_mb"] >= r["request_base_mb"]
    assert (tmp_path / "mem.md").read_text().startswith("| int8, 2 threads, 2 rows | tiny | again |")
    done = subprocess.run([sys.executable, str(bench), "--data", str(data), f"x={tmp_path / 'missing'}"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "expected label=path of an existing export folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_argument_errors_files_each_miss_under_its_cause(tmp_path):
    import json
    import subprocess

    def row(query, language, function, gold, predicted_function, predicted):
        return {"query": query, "language": language, "function": function, "arguments": gold,
                "predicted_function": predicted_function, "predicted_arguments": predicted}

    rows = [
        row("email ann@x.org about the car repair", "en", "send_email",
            {"recipient": "ann@x.org", "subject": "the car repair"}, "send_email",
            {"recipient": "ann@x.org", "subject": "the car repair"}),  # exact
        row("帮我给ann@x.org发一封关于修车的邮件", "zh", "send_email", {"recipient": "ann@x.org", "subject": "修车"},
            "send_email", {"recipient": "ann@x.org", "subject": "修车的邮件"}),  # ends long
        row("发信息告诉王阿姨面包没了", "zh", "send_text_message", {"recipient": "王阿姨", "message": "面包没了"},
            "send_text_message", {"recipient": "王阿姨", "message": "告诉王阿姨面包没了"}),  # starts early
        row("where should I throw a jam jar", "en", "smart_recycling", {"item": "jam jar", "material": "glass"},
            "smart_recycling", {"item": "jam jar", "material": "paper"}),  # enum
        row("order 5 cheeseburger", "en", "doordash_delivery", {"dish": "cheeseburger", "quantity": 5},
            "doordash_delivery", {"dish": "cheeburger"}),  # reworded + left out
        row("find a pet sitter for him", "en", "pet_care", {"pet": "poodle"}, "pet_care",
            {"pet": "poodle", "service": "boarding"}),  # added
        row("order this", "en", "doordash_delivery", {"dish": "ramen"}, "amazon_shopping", {"product": "ramen"}),
        row("turn off the wifi", "en", None, {}, None, {}),  # irrelevant: no arguments to judge
    ]
    data = tmp_path / "pred.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    script = Path(__file__).parent.parent / "bench" / "argument_errors.py"
    done = subprocess.run([sys.executable, str(script), "--name", str(tmp_path / "ae"), f"a={data}", f"b={data}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "ae.json").read_text())["a"]
    assert report["rows"] == {"en": 5, "zh": 2} and report["row_exact"] == {"en": 0.2, "zh": 0.0}
    assert report["misses"]["zh"] == {"span ends long": 1, "span starts early": 1}
    assert report["misses"]["en"] == {"enumerated value wrong": 1, "copied, reworded": 1, "left out": 1,
                                      "added": 1, "function wrong": 1}
    assert report["enum_confusions"]["en"] == {"smart_recycling.material: glass -> paper": 1}
    table = (tmp_path / "ae.md").read_text()
    assert table.startswith("| argument misses by cause | a | b |")
    assert "| span ends long EN / ZH | 0 (0.0%) / 1 (25.0%) | 0 (0.0%) / 1 (25.0%) |" in table
    (tmp_path / "bad.jsonl").write_text('{"query": "hi"}\n')
    done = subprocess.run([sys.executable, str(script), "--name", str(tmp_path / "x"), f"a={tmp_path / 'bad.jsonl'}"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "is not an `octopus eval --out` prediction" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x.md").exists()


def test_first_token_kinds_scores_each_kind_and_the_bias_sweep_per_language():
    from first_token_kinds import rates

    rows = [_row("a", "irrelevant"), _row("b", "text"), _row("c", "ambiguous"), _row("d", "ambiguous"),
            {"language": "en", "meta": {"template": "e", "kind": "text"}}]
    logprobs = [[-0.3, -3.0, -1.5],   # irrelevant, no-function 1.2 behind: declined from a bias of +1.5
                [-0.1, -3.0, -4.0],   # text, right at any bias swept
                [-2.0, -0.2, -3.0],   # only the image decides, gold 0: wrong
                [-0.2, -2.0, -1.1],   # only the image decides, right below a bias of +0.9
                [-0.1, -3.0, -9.0]]   # English, right
    gold = [2, 0, 0, 0, 0]
    out = rates(rows, logprobs, gold)
    assert set(out) == {"en", "zh"}
    assert out["zh"]["kinds"] == {"text": {"rows": 1, "right": 100.0}, "ambiguous": {"rows": 2, "right": 50.0},
                                  "irrelevant": {"rows": 1, "right": 0.0}}
    sweep = {s["bias"]: s for s in out["zh"]["sweep"]}
    assert (sweep[0.0]["fits"], sweep[0.0]["irrelevant"], sweep[0.0]["all"]) == (66.7, 0.0, 50.0)
    assert (sweep[1.0]["fits"], sweep[1.0]["irrelevant"]) == (33.3, 0.0)  # the image row lost, nothing declined
    assert (sweep[1.5]["fits"], sweep[1.5]["irrelevant"], sweep[1.5]["all"]) == (33.3, 100.0, 50.0)
    assert out["en"]["kinds"] == {"text": {"rows": 1, "right": 100.0}}


def test_the_checkpoint_bench_writes_both_and_the_stage_s_own_is_smaller(tiny_agent, tmp_path):
    import subprocess

    tiny_agent.save(tmp_path / "agent")
    script = Path(__file__).parent.parent / "bench" / "checkpoint_save.py"
    out = tmp_path / "ck.json"
    done = subprocess.run([sys.executable, str(script), "--agent", str(tmp_path / "agent"), "--profile", "tiny",
                           "--repeats", "2", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    sizes = {r["checkpoint"]: r["megabytes"] for r in result["results"]}
    assert sizes["what the stage trains (shipped)"] < sizes["whole model (before)"]
    assert all(len(r["seconds"]) == 2 for r in result["results"])
    assert 0 < result["parameters"]["trainable"] < result["parameters"]["all"]
    bad = subprocess.run([sys.executable, str(script), "--agent", str(tmp_path / "none")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no agent folder" in bad.stderr


def test_wording_compare_lists_the_wordings_builds_disagree_on(tmp_path):
    import subprocess

    def write(path: Path, right: dict[str, int]) -> None:
        rows = []
        for template, n_right in right.items():
            for i in range(4):  # four rows a wording, the first n_right answered right
                rows.append({"query": f"{template} {i}", "language": "zh", "function": "send_email",
                             "predicted_function": "send_email" if i < n_right else None,
                             "meta": {"template": template, "kind": "text"}})
        rows.append({"query": "hi", "language": "en", "function": "send_email", "predicted_function": None,
                     "meta": {"template": "en/0", "kind": "text"}})  # another language: left out
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    write(tmp_path / "a.jsonl", {"w/1": 4, "w/2": 0, "w/3": 1})
    write(tmp_path / "b.jsonl", {"w/1": 4, "w/2": 4, "w/3": 0})
    script = Path(__file__).parent.parent / "bench" / "wording_compare.py"
    done = subprocess.run([sys.executable, str(script), "--name", str(tmp_path / "cmp"), "--language", "zh",
                           f"a={tmp_path / 'a.jsonl'}", f"b={tmp_path / 'b.jsonl'}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["accuracy"] == {"a": 5 / 12, "b": 8 / 12}
    assert report["differing"] == ["w/2"] and report["missed_by_all"] == ["w/3"]
    assert list(report["per_wording"])[:2] == ["w/2", "w/3"]  # the widest spread first
    table = (tmp_path / "cmp.md").read_text()
    assert "| `w/2` w/2 0 | 4 | 0 | 100 | 100 |" in table and "`w/1`" not in table  # right everywhere: not listed
    (tmp_path / "c.jsonl").write_text('{"query": "x"}\n')
    done = subprocess.run([sys.executable, str(script), "--name", str(tmp_path / "bad"),
                           f"a={tmp_path / 'a.jsonl'}", f"c={tmp_path / 'c.jsonl'}"], capture_output=True, text=True)
    assert done.returncode != 0 and "is not a prediction row" in done.stderr and "Traceback" not in done.stderr


def test_a_soup_averages_the_lms_of_agents_that_share_their_image_side(tiny_agent, tmp_path):
    import subprocess

    import torch
    from safetensors.torch import load_file, save_file

    a, b = tiny_agent.save(tmp_path / "a"), tiny_agent.save(tmp_path / "b")
    lm_b = load_file(b / "lm" / "model.safetensors")
    name = next(k for k, v in lm_b.items() if v.is_floating_point() and v.numel() > 1)
    lm_b[name] = lm_b[name] + 1.0  # seed b's weights differ by one everywhere in this tensor
    save_file(lm_b, b / "lm" / "model.safetensors", metadata={"format": "pt"})
    script = Path(__file__).parent.parent / "bench" / "soup.py"
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "soup"), str(a), str(b)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    soup = load_file(tmp_path / "soup" / "lm" / "model.safetensors")
    original = load_file(a / "lm" / "model.safetensors")
    assert torch.allclose(soup[name], original[name] + 0.5)
    assert all(torch.equal(soup[k], v) for k, v in original.items() if k != name)
    from octopus.model.agent import OctopusAgent
    assert OctopusAgent.load(tmp_path / "soup").config.to_dict() == tiny_agent.config.to_dict()

    image_side = load_file(b / "vision_projector.safetensors")
    key = next(k for k in image_side if k.startswith("projector."))
    image_side[key] = image_side[key] + 1.0  # another stage 1: refused
    save_file(image_side, b / "vision_projector.safetensors")
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "bad"), str(a), str(b)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "another image side" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bad").exists()

    lm_b.pop(name)  # the same image side again, but an LM of another architecture: refused too
    save_file(load_file(a / "vision_projector.safetensors"), b / "vision_projector.safetensors")
    save_file(lm_b, b / "lm" / "model.safetensors", metadata={"format": "pt"})
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "bad"), str(a), str(b)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "other tensors" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.tmp").exists()
