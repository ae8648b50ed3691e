"""User functions: the function file, `octopus train extend`, and a registry that travels with the model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from octopus.calls import CallError, parse_and_validate
from octopus.function_file import FunctionFileError, load_function_file
from octopus.functions import BUILTIN, Registry

REPO = Path(__file__).resolve().parents[1]
LAMP = REPO / "training" / "functions" / "lamp_control.toml"


def _octopus() -> str:
    beside = Path(sys.executable).parent / "octopus"
    return str(beside) if beside.exists() else shutil.which("octopus")


def _lamp_file(tmp_path: Path, **replace: str) -> Path:
    text = LAMP.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "functions.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_worked_example_reads_as_the_eleventh_function(tmp_path):
    [lamp] = load_function_file(LAMP)
    registry = BUILTIN.extended([lamp])
    assert registry.token_for("lamp_control") == "<nexa_10>"
    assert [registry.token_for(n) for n in BUILTIN.names()] == BUILTIN.tokens()  # the ten keep their tokens
    assert sum(e.language == "zh" for e in lamp.examples) >= 4 and lamp.action == {
        "webhook": "http://homeassistant.local:8123/api/webhook/octopus-lamp"}
    call = '<nexa_10>(room="kitchen", state="on")<nexa_end>'
    assert parse_and_validate(call, registry).function == "lamp_control"
    unknown = parse_and_validate(call)  # a model without it: the token is not a function
    assert isinstance(unknown, CallError) and unknown.kind == "unknown_function"
    bad = parse_and_validate('<nexa_10>(room="kitchen", state="dim")<nexa_end>', registry)
    assert isinstance(bad, CallError) and "state" in bad.message
    assert Registry.from_json(json.loads(json.dumps(registry.to_json()))) == registry  # as the manifest carries it
    [copied] = load_function_file(_lamp_file(tmp_path, **{"values_en = [": "copied = true\nvalues_en = ["}))
    assert copied.argument("room").copied and not lamp.argument("room").copied  # every example's room is in it
    registry = BUILTIN.extended([copied])
    assert Registry.from_json(json.loads(json.dumps(registry.to_json()))).get("lamp_control").argument("room").copied


@pytest.mark.parametrize("replace, message", [
    ({'name = "lamp_control"': 'name = "send_email"'}, "has a function called 'send_email' already"),
    ({'type = "string"': 'type = "float"'}, "'type' must be one of string, integer"),
    ({'enum = ["on", "off"]': 'enum = ["on", "off"]\ncolour = "red"'}, "unknown key 'colour'"),
    ({'arguments = { room = "kitchen", state = "on" }': 'arguments = { room = "kitchen", state = "dim" }'},
     "'state' must be one of on, off"),
    ({'arguments = { room = "kitchen", state = "on" }': 'arguments = { state = "on" }'},
     "missing required argument 'room'"),
    ({'action = { webhook = "http://homeassistant.local:8123/api/webhook/octopus-lamp" }':
      'action = { handler = ["lamp", "{room}"] }'}, "absolute program path"),
    ({'action = { webhook = "http://homeassistant.local:8123/api/webhook/octopus-lamp" }':
      'action = { link = "https://x.example/{colour}" }'}, "names {colour}, which is not an argument"),
    ({f'request = "{zh}"': f'request = "lamp {i}"' for i, zh in enumerate(
        ["打开厨房的灯", "把卧室的台灯关掉", "客厅开一下灯", "关闭卫生间的灯", "儿童房太黑了，把灯打开"])},
     "has 3 Chinese request(s); at least 4"),
    ({'[[functions]]': '[[functions]\n'}, "not valid TOML"),
    ({'enum = ["on", "off"]': 'enum = ["on", "off"]\ncopied = true'}, "true only for free-text string arguments"),
    ({'values_en = [': 'copied = true\nvalues_en = [',
      'request = "switch off the bedroom lamp"': 'request = "switch off the lamp where I sleep"'},
     "'room' is copied, but 'bedroom' is not in the request"),
])
def test_a_bad_function_file_is_one_line_naming_the_problem(tmp_path, replace, message):
    path = _lamp_file(tmp_path, **replace)
    with pytest.raises(FunctionFileError) as info:
        load_function_file(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    cli = subprocess.run([_octopus(), "functions", "--file", str(path)], capture_output=True, text=True)
    assert cli.returncode == 2 and message in cli.stderr and "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    extend = subprocess.run([_octopus(), "train", "extend", "--from", "default", "--functions", str(path), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert extend.returncode == 2 and message in extend.stderr and "Traceback" not in extend.stderr
    assert not (tmp_path / "out").exists()  # refused before any work


def test_json_function_files_read_the_same(tmp_path):
    import tomllib

    path = tmp_path / "functions.json"
    path.write_text(json.dumps(tomllib.loads(LAMP.read_text(encoding="utf-8")), ensure_ascii=False))
    assert load_function_file(path) == load_function_file(LAMP)


def test_examples_become_templates_with_held_out_wordings_and_values():
    from octopus.training.data.user_functions import derive_templates, split_user_function

    [lamp] = load_function_file(LAMP)
    templates = {t.text: t.fixed for t in derive_templates(lamp)}
    assert templates["turn {state} the lamp in the {room}"] == {}  # "on" is not found inside "room"
    assert templates["打开{room}的灯"] == {"state": "on"}  # said another way: the wording fixes it
    splits = split_user_function(lamp)
    train, test = splits["train"], splits["test"]
    assert not {t.text for t in train[0]} & {t.text for t in test[0]}
    assert not set(train[1][("room", "en")]) & set(test[1][("room", "en")])
    assert train[1][("state", "en")] == test[1][("state", "en")] == ["on", "off"]  # an enum is never held out


def test_extend_a_tiny_model_and_answer_the_new_function_on_the_torch_free_runtime(tmp_path):
    """From a function file to a valid call of the new token through onnxruntime, and to its action."""
    torch = pytest.importorskip("torch")
    from octopus.device.runtime import OnnxAgent
    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    OctopusAgent.build(tiny()).save(tmp_path / "start")
    handler = tmp_path / "lamp.py"
    handler.write_text("import json, os, sys\n"
                       "open(os.environ['LAMP_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    argv = f'["{sys.executable}", "{handler}", "--room", "{{room}}", "--state", "{{state}}"]'
    webhook = 'action = { webhook = "http://homeassistant.local:8123/api/webhook/octopus-lamp" }'
    functions = _lamp_file(tmp_path, **{webhook: f"action = {{ handler = {argv} }}"})
    out = tmp_path / "out"
    steps = ["--set", "extend.n_per_function=4", "--set", "extend.replay_per_function=0",
             "--set", "extend.stage.epochs=150", "--set", "extend.stage.lr=1e-2"]
    run = subprocess.run([_octopus(), "train", "extend", "--profile", "tiny", "--from", str(tmp_path / "start"),
                          "--functions", str(functions), "--out", str(out), *steps],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((out / "extend.json").read_text())
    assert record["functions"] == ["lamp_control"] and record["rows"]["train"] == 8
    again = subprocess.run([_octopus(), "-v", "train", "extend", "--profile", "tiny", "--from",
                            str(tmp_path / "start"), "--functions", str(functions), "--out", str(out), *steps],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "extend: loading" not in again.stderr and "skipping the fine-tune" in again.stderr  # all done already

    extended = OctopusAgent.load(out / "agent")
    start = OctopusAgent.load(tmp_path / "start")
    assert extended.tokens.function_ids[:10] == start.tokens.function_ids  # the ten keep their ids
    assert extended.tokens.function_ids[10] == len(start.tokenizer)  # appended after every token there was
    export(out / "agent", tmp_path / "onnx", int8=True)
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert [f["name"] for f in manifest["functions"]][10:] == ["lamp_control"]

    rows = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    runtime = OnnxAgent(tmp_path / "onnx", precision="fp32")
    answers = [runtime.generate(out / "data" / r["image"], r["query"]) for r in rows]
    valid = [(a.function, a.arguments) for a in answers if not isinstance(a.result, CallError)]
    assert ("lamp_control", rows[0]["arguments"]) in valid or len(valid) >= 6, [a.raw for a in answers]
    assert sum(f == "lamp_control" for f, _ in valid) >= 6, [a.raw for a in answers]

    # the device: `octopus functions` and `ask --execute` read the table from the manifest; the handler runs
    # only where the config allows it
    listed = subprocess.run([_octopus(), "functions", "--model", str(tmp_path / "onnx")], capture_output=True,
                            text=True, check=True)
    assert "<nexa_10>  lamp_control(room: string, state: string)" in listed.stdout
    row = next(r for r, a in zip(rows, answers) if (a.function, a.arguments) == (r["function"], r["arguments"]))
    env = {**os.environ, "LAMP_LOG": str(tmp_path / "lamp.log"), "XDG_STATE_HOME": str(tmp_path / "state")}

    def ask(config: str) -> subprocess.CompletedProcess:
        (tmp_path / "config.toml").write_text(config)
        return subprocess.run([_octopus(), "ask", "--model", str(tmp_path / "onnx"), "--precision", "fp32",
                               "--image", str(out / "data" / row["image"]), "--query", row["query"], "--execute",
                               "--json", "--config", str(tmp_path / "config.toml")],
                              capture_output=True, text=True, env=env, timeout=120)

    refused = ask("[actions]\nexecute = true\n")
    assert refused.returncode == 1 and "allow_handlers" in json.loads(refused.stdout)["action"]["detail"]
    assert not (tmp_path / "lamp.log").exists()
    done = ask('[actions]\nexecute = true\nallow_handlers = ["lamp_control"]\n')
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["function"] == "lamp_control" and answer["action"]["status"] == "done"
    assert json.loads((tmp_path / "lamp.log").read_text()) == ["--room", row["arguments"]["room"], "--state",
                                                                row["arguments"]["state"]]
    (tmp_path / "config.toml").write_text(f'[model]\npath = "{tmp_path / "onnx"}"\n')
    doctor = subprocess.run([_octopus(), "doctor", "--no-network", "--config", str(tmp_path / "config.toml")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert "functions  11 functions; user: lamp_control (handler)" in doctor.stdout, doctor.stdout
    # a config naming a function the model lacks: one line, before anything runs
    unknown = ask('[actions]\nallow_handlers = ["garage_door"]\n')
    assert unknown.returncode == 2 and "garage_door" in unknown.stderr and "Traceback" not in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


PARTY = """
[[functions]]
name = "party_planning"
description_en = "Plan a party around an item."
description_zh = "围绕某样东西筹划派对。"
concepts = ["balloon", "gift_box", "candle", "trophy"]
image_argument = "item"

[[functions.arguments]]
name = "item"
type = "string"
description_en = "The party item."
description_zh = "派对用品。"

"""
PARTY_EXAMPLES = [("plan a party with balloons", "balloons"), ("throw a party around the cake", "cake"),
                  ("party ideas with a trophy", "trophy"), ("organise a party with candles", "candles"),
                  ("用气球办个派对", "气球"), ("围绕蛋糕策划派对", "蛋糕"), ("用奖杯办一场庆祝派对", "奖杯"),
                  ("准备一个有蜡烛的派对", "蜡烛")]
PARTY += "".join(f'[[functions.examples]]\nrequest = "{request}"\narguments = {{ item = "{item}" }}\n'
                 for request, item in PARTY_EXAMPLES)


def test_concepts_make_a_user_function_the_answer_when_only_the_image_decides(tmp_path):
    from octopus.training.data.concepts import concept
    from octopus.training.data.user_functions import plan_image_rows, read_user_functions

    path = tmp_path / "party.toml"
    path.write_text(PARTY, encoding="utf-8")
    [party] = read_user_functions(path, BUILTIN)
    registry = BUILTIN.extended([party])
    train, test = (plan_image_rows(party, registry, split, 6, 0) for split in ("train", "test"))
    assert {r["meta"]["objects"][0] for r in train} == {"balloon", "gift_box", "candle"}  # the fourth held out
    assert {r["meta"]["objects"][0] for r in test} == {"trophy"}
    for row in train + test:
        main = concept(row["meta"]["objects"][0])
        assert row["meta"]["kind"] == "ambiguous" and row["arguments"] == {"item": main.name(row["language"])}
        assert parse_and_validate(row["target"], registry).function == "party_planning"
        assert "this" in row["query"].lower() or "这" in row["query"]  # the words name neither function nor object
    for old, new, message in [
        ('"trophy"]', '"dog"]', "concept 'dog' already means pet_care"),
        ('"trophy"]', '"unicorn"]', "'unicorn', which is not in the concept table"),
        ('image_argument = "item"\n', "", "'concepts' needs 'image_argument'"),
    ]:
        path.write_text(PARTY.replace(old, new, 1), encoding="utf-8")
        with pytest.raises(FunctionFileError, match=message) as info:
            read_user_functions(path, BUILTIN)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_lm_tokens_mode_trains_the_new_token_rows_alone():
    """lm=tokens: an optimizer step changes the user function's rows and nothing else of the LM."""
    torch = pytest.importorskip("torch")
    from dataclasses import replace

    from PIL import Image

    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny
    from octopus.training.extend import extend_config, extended_agent
    from octopus.training.loop import apply_train_modes

    torch.manual_seed(0)
    agent = extended_agent(OctopusAgent.build(tiny()), load_function_file(LAMP))
    stage = replace(extend_config("tiny").stage, train={"vision_encoder": "frozen", "projector": "frozen",
                                                        "lm": "tokens"})
    before = {k: v.clone() for k, v in agent.lm.state_dict().items()}
    apply_train_modes(agent, stage)
    prompt = agent.encode_prompt("turn on the lamp in the kitchen")
    target = agent.encode_target('<nexa_10>(room="kitchen", state="on")<nexa_end>')
    labels = torch.tensor([[-100] * len(prompt) + target])
    loss = agent(torch.tensor([prompt + target]), pixels=agent.pixels(Image.new("RGB", (48, 48))),
                 labels=labels).loss
    loss.backward()
    torch.optim.Adam([p for p in agent.parameters() if p.requires_grad], lr=1e-2).step()
    new_id = agent.tokens.function_ids[10]
    for name, tensor in agent.lm.state_dict().items():
        changed = (tensor != before[name]).reshape(tensor.shape[0], -1).any(1).nonzero().flatten().tolist() \
            if tensor.ndim else []
        assert changed in ([], [new_id]), name
    assert (agent.lm.get_input_embeddings().weight[new_id] != before["model.embed_tokens.weight"][new_id]).any()
