"""The one decode loop both back-ends use: constrained first token, greedy after, stop at the end token or the
budget; the same ids from numpy and torch logits."""

from __future__ import annotations

import numpy as np
import pytest

from octopus.generation import greedy_decode

END = 9


def scripted(tokens: list[int], vocab: int = 10):
    """step() that answers the next scripted token as the argmax of one-hot logits, recording what it was fed."""
    fed = []

    def step(token: int):
        fed.append(token)
        logits = np.zeros(vocab, np.float32)
        logits[tokens[len(fed) - 1]] = 1.0
        return logits
    return step, fed


def test_the_first_token_is_constrained_and_decoding_stops_at_the_end_token():
    first = np.array([0, 5, 0, 0, 3, 0, 0, 0, 0, 0], np.float32)  # 1 is the argmax, but only 2 and 4 are allowed
    step, fed = scripted([7, 8, END, 6])
    assert greedy_decode(first, step, [2, 4], END, 64) == [4, 7, 8, END]
    assert fed == [4, 7, 8]  # every generated token but the end one was fed back


def test_the_budget_ends_a_call_that_never_closes():
    step, fed = scripted([1] * 100)
    assert greedy_decode(np.arange(10.0), step, np.array([3, 4]), END, 5) == [4, 1, 1, 1, 1]
    assert all(isinstance(t, int) for t in greedy_decode(np.arange(10.0), step, np.array([3, 4]), END, 3))


def test_torch_logits_decode_the_same_ids():
    torch = pytest.importorskip("torch")
    first = torch.tensor([0.0, 5, 0, 0, 3, 0, 0, 0, 0, 0])
    step, _ = scripted([7, 8, END])
    assert greedy_decode(first, lambda t: torch.from_numpy(step(t)), [2, 4], END, 64) == [4, 7, 8, END]


def test_a_seeded_tiny_agent_gives_the_predictions_recorded_before_the_refactor(tmp_path):
    """Behaviour unchanged: torch, ONNX fp32 and ONNX int8 answer 18 (image, request) pairs exactly as the code
    did when the fixture was recorded (tests/tiny_predictions.py says at which commit)."""
    import json
    from pathlib import Path

    pytest.importorskip("torch")
    from tiny_predictions import tiny_predictions

    recorded = json.loads((Path(__file__).parent / "fixtures" / "tiny_predictions.json").read_text(encoding="utf-8"))
    now = tiny_predictions(tmp_path)
    assert len(set(now["torch"])) > 10  # the answers depend on the input, so a change would show
    for backend, answers in recorded.items():
        assert now[backend] == answers, backend


def test_reject_bias_moves_only_the_first_choice_toward_no_function():
    first = np.array([0, 0, 4.0, 0, 3.0, 0, 0, 0, 0, 0], np.float32)  # allowed 2 (a function), 4 (no function, last)

    def decode(bias):
        step, fed = scripted([7, END])
        return greedy_decode(first, step, [2, 4], END, 64, reject_bias=bias)

    assert decode(0.0) == [2, 7, END] and decode(0.5)[0] == 2 and decode(-10)[0] == 2
    assert decode(1.5) == [4, 7, END]  # past the first token, decoding is as before


def test_reject_bias_is_chosen_by_the_request_language_and_parsed_in_one_line():
    from octopus.generation import parse_reject_bias, reject_bias_for

    biases = parse_reject_bias(["zh=1.5", "en=-0.25"])
    assert biases == {"zh": 1.5, "en": -0.25}
    assert reject_bias_for(biases, "现在几点了？") == 1.5 and reject_bias_for(biases, "what time is it") == -0.25
    assert reject_bias_for({"zh": 2.0}, "order this") == 0.0 and reject_bias_for({}, "买这个") == 0.0
    for bad, message in [("fr=1", "LANG one of en, zh"), ("zh", "LANG=NUMBER"), ("zh=lots", "not a number"),
                         ("zh=nan", "between"), ("en=1e9", "between")]:
        with pytest.raises(ValueError, match=message) as info:
            parse_reject_bias([bad])
        assert "\n" not in str(info.value)


def test_open_string_finds_the_argument_whose_quoted_value_is_being_written():
    from octopus.generation import open_string

    assert open_string('(pet="poodle", service="wal') == ("service", "wal")
    assert open_string('(pet="poodle", service="') == ("service", "")
    assert open_string('(pet="poodle", service="walking")') is None
    assert open_string('(pet="poodle",') is None and open_string("") is None
    # complete strings are skipped whatever they hold, escapes included
    assert open_string('(message="a=\\"b\\" style=\\"x", style="mo') == ("style", "mo")
    assert open_string('(message="say \\"hi') == ("message", 'say "hi')


# a toy tokenizer: every piece is a token; 0 is the functional token of pet_care's slot, END closes
PIECES = ["<pet_care>", "(", "pet", '="', "po", "odle", '",', " service", "walk", "ing", " sitter", '")', "w",
          "<end>"]
PET, END_PIECE = 0, PIECES.index("<end>")


def _decode(ids: list[int]) -> str:
    return "".join(PIECES[i] for i in ids if not PIECES[i].startswith("<"))


def _toy_model(generated: list[int]):
    """Logits a model might give after `generated` (functional token first): the call's frame as scripted, then
    inside service's value it prefers "pet", " sitter" and only then the schema's "walk"+"ing"; after the value
    it closes the call."""
    frame = ["(", "pet", '="', "po", "odle", '",', " service", '="']
    logits = np.zeros(len(PIECES), np.float32)
    if len(generated) - 1 < len(frame):
        logits[PIECES.index(frame[len(generated) - 1])] = 9
    elif _decode(generated).endswith('")'):
        logits[END_PIECE] = 9
    else:
        for piece, score in (("pet", 6), (" sitter", 5), ("walk", 4), ("ing", 3), ('")', 2), ("w", 1)):
            logits[PIECES.index(piece)] = score
    return logits


def test_enumerated_argument_values_come_from_the_schema_and_other_values_stay_greedy():
    from octopus.calls import parse_and_validate
    from octopus.functions import BUILTIN
    from octopus.generation import ArgumentConstraint

    function_ids = [100 + k for k in range(len(BUILTIN))]  # the toy's token 0 stands for pet_care's token
    pet_care = BUILTIN.names().index("pet_care")
    constraint = ArgumentConstraint.for_registry(BUILTIN, [PET if k == pet_care else f for k, f in
                                                           enumerate(function_ids)], _decode)
    assert constraint.enums[PET] == {"service": tuple(f'{v}"'.encode() for v in
                                                      ("food", "grooming", "vet", "walking", "toys", "boarding"))}

    def run(enums):
        generated = []

        def step(token):
            generated.append(token)
            return _toy_model(generated)
        first = np.zeros(len(PIECES), np.float32)
        first[PET] = 1
        return greedy_decode(first, step, [PET, END_PIECE - 1], END_PIECE, 40, constraint=enums)

    plain = _decode(run(None))
    assert plain.startswith('(pet="poodle", service="petpet')  # greedy: a value no schema has, never closed
    constrained = run(constraint)
    text = _decode(constrained)
    assert text == '(pet="poodle", service="walking")' and constrained[-1] == END_PIECE
    # the free-text argument before it was left to greedy; the call now validates (with the real token)
    call = parse_and_validate(BUILTIN.token_for("pet_care") + text + "<nexa_end>", BUILTIN)
    assert call.function == "pet_care" and call.arguments == {"pet": "poodle", "service": "walking"}
    # other functions' calls and numpy vs torch logits: the same choice
    torch = pytest.importorskip("torch")
    inside = [PET, 1, 2, 3, 4, 5, 6, 7, 3]  # (pet="poodle", service="
    assert _decode(inside).endswith('service="')
    logits = _toy_model(inside)
    walk = PIECES.index("walk")
    assert constraint.choose(inside, logits) == constraint.choose(inside, torch.from_numpy(logits)) == walk
    assert constraint.choose([function_ids[0], *inside[1:]], logits) == int(logits.argmax())  # send_email: greedy


def _tiny_constraint():
    """(byte-level tokenizer, functional token ids for the ten, their ArgumentConstraint): a real tokenizer of 512
    tokens, so a Chinese character is split over byte tokens; the functional tokens sit past its vocabulary."""
    from octopus.functions import BUILTIN
    from octopus.generation import ArgumentConstraint
    from octopus.model.lm import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(512)
    function_ids = [len(tokenizer) + k for k in range(len(BUILTIN))]
    constraint = ArgumentConstraint.for_registry(
        BUILTIN, function_ids, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        tokenizer.convert_ids_to_tokens)
    return tokenizer, function_ids, constraint


@pytest.mark.parametrize("request_text, right, wrong", [
    ("please email umar.f@company.co about the car repair",
     '(recipient="umar.f@company.co", subject="the car repair")',
     '(recipient="maru.f@company.co", subject="car repair")'),
    ("发信息告诉孙阿姨晚安", '(recipient="孙阿姨", message="晚安")', '(recipient="孙阿妈", message="说晚安")'),
    # words of the request, but not an address: the pattern narrows the spans to the request's addresses
    ("drop quinn@startup.io a quick email about the car repair",
     '(recipient="quinn@startup.io", subject="the car repair")',
     '(recipient="a quick email", subject="the car repair")'),
])
def test_copied_argument_values_stay_words_of_the_request(request_text, right, wrong):
    """A model that would rather write a misspelled copy (an address of somebody else; 妈 for 姨, which share
    their first UTF-8 byte, so the choice falls inside a character split over byte tokens; other words of the
    request where an address belongs) writes the right span under the constraint, through a real byte-level
    tokenizer; plain greedy keeps the mistake."""
    pytest.importorskip("transformers")
    from octopus.calls import parse_and_validate
    from octopus.functions import BUILTIN

    tokenizer, function_ids, constraint = _tiny_constraint()
    vocab, end = len(tokenizer), len(tokenizer) + 20
    name = "send_email" if "@" in request_text else "send_text_message"
    token = function_ids[BUILTIN.names().index(name)]
    assert set(constraint.copied[token]) == ({"recipient", "subject", "body"} if name == "send_email"
                                             else {"recipient", "message"})
    pieces = [constraint.piece(t) for t in range(vocab)]
    assert any(len(p) == 1 and p[0] >= 0x80 for p in pieces)  # byte tokens: part of a character
    right_bytes, wrong_bytes = right.encode(), wrong.encode()

    def model(generated: list[int]) -> np.ndarray:
        """Likes the wrong call best (10) and the right one next (5), token by token; closes after either."""
        so_far = b"".join(pieces[t] for t in generated[1:])
        logits = np.zeros(end + 1, np.float32)
        if so_far in (right_bytes, wrong_bytes):
            logits[end] = 10
            return logits
        for t, piece in enumerate(pieces):
            if piece and wrong_bytes.startswith(so_far + piece):
                logits[t] = max(logits[t], 10 + len(piece) / 100)
            if piece and right_bytes.startswith(so_far + piece):
                logits[t] = max(logits[t], 5 + len(piece) / 100)
        return logits

    def run(with_constraint: bool) -> str:
        generated = []

        def step(t):
            generated.append(t)
            return model(generated)
        first = np.zeros(end + 1, np.float32)
        first[token] = 1
        ids = greedy_decode(first, step, [token, end - 1], end, 64,
                            constraint=constraint if with_constraint else None, request=request_text)
        assert ids[-1] == end
        return tokenizer.decode(ids[1:-1])

    assert run(False) == wrong
    assert run(True) == right
    call = parse_and_validate(BUILTIN.token_for(name) + right + "<nexa_end>", BUILTIN)
    assert call.function == name
    # a request with a quote in it would need escapes: its values are left to greedy
    assert run(True) == right and constraint.choose([token], model([token]), 'say "hi"') == int(model([token]).argmax())


def test_a_copied_value_cannot_close_empty_or_begin_outside_the_request():
    pytest.importorskip("transformers")
    from octopus.functions import BUILTIN

    tokenizer, function_ids, constraint = _tiny_constraint()
    sms = function_ids[BUILTIN.names().index("send_text_message")]
    opened = [sms, *tokenizer.encode('(recipient="', add_special_tokens=False)]
    assert constraint.state(opened) == ("recipient", b"")
    quote = tokenizer.encode('"', add_special_tokens=False)
    letter = tokenizer.encode("E", add_special_tokens=False)
    logits = np.zeros(len(tokenizer), np.float32)
    logits[quote[0]], logits[letter[0]] = 9, 5
    assert len(quote) == len(letter) == 1
    assert constraint.choose(opened, logits, "text Ethan good luck") == letter[0]  # not recipient=""
    assert constraint.choose(opened, logits, "text ethan good luck") != quote[0]
    began = [*opened, *tokenizer.encode("Zed", add_special_tokens=False)]  # not in the request: left to greedy
    assert constraint.choose(began, logits, "text Ethan good luck") == quote[0]


def test_a_token_of_no_text_never_goes_inside_a_constrained_value():
    """A functional or other special token adds no text, so it "keeps" any value a prefix; the constraint must
    still pass it over (Gemma once wrote body="<nexa_0>邮"), for a copied value and an enumerated one."""
    pytest.importorskip("transformers")
    from octopus.functions import BUILTIN

    tokenizer, function_ids, constraint = _tiny_constraint()
    email, pet = (function_ids[BUILTIN.names().index(n)] for n in ("send_email", "pet_care"))
    for token, opening, request, expected in (
            (email, '(recipient="ann@x.io", body="', "email ann@x.io lunch is ready", "lunch"),
            (pet, '(pet="cat", service="', "walk my cat", "walking")):
        opened = [token, *tokenizer.encode(opening, add_special_tokens=False)]
        assert constraint.piece(function_ids[0]) == b""
        logits = np.zeros(function_ids[-1] + 1, np.float32)
        logits[function_ids[0]] = 9  # the model's favourite: a functional token inside the value
        for t in tokenizer.encode(expected, add_special_tokens=False)[:1]:
            logits[t] = 5
        chosen = constraint.choose(opened, logits, request)
        assert chosen != function_ids[0] and expected.encode().startswith(constraint.piece(chosen))
