"""Drafted decoding: what the call drafter guesses, and that checking its drafts changes passes, not answers."""

from __future__ import annotations

import numpy as np
import pytest

from octopus.drafting import CallDrafter, continuation
from octopus.functions import BUILTIN
from octopus.generation import greedy_decode


def _args(name: str):
    return BUILTIN.get(name).arguments


@pytest.mark.parametrize("function, body, request_text, expected", [
    # the schema: the first required argument opens the call; after a value, the next required one
    ("send_email", "", "", ('(recipient="', False)),
    ("send_email", '(recipient="ann@example.com"', "", (', subject="', False)),
    # only optional arguments left (the body): the call closes
    ("send_email", '(recipient="ann@example.com", subject="the trip"', "", (")", True)),
    ("pet_care", '(pet="dog", service="walking")', "", ("", True)),
    # the model chose to go on: the next argument in order, optional or not
    ("pet_care", '(pet="dog",', "", (' service="', False)),
    ("pet_care", '(pet="dog", ', "", ('service="', False)),
    # an enumerated value that only one allowed value begins with; two candidates: no guess
    ("pet_care", '(pet="dog", service="gro', "", ('oming")', True)),
    ("smart_recycling", '(item="jar", material="p', "", None),
    # a copied (or free) value goes on with the request's words; at the request's end it closes
    ("send_email", '(recipient="ann@', "email ann@example.com about the trip",
     ('example.com about the trip', False)),
    ("send_text_message", '(recipient="阿强", message="门开着', "发信息告诉阿强门开着", ('")', True)),
    ("google_search", '(query="best hik', "best hiking boots", ("ing boots", False)),
    # a copied value with a pattern that only one span of the request matches: that span
    ("send_email", '(recipient="', "email ann@example.com about the trip", ('ann@example.com", subject="', False)),
    ("send_email", '(recipient="', "email ann@example.com or bo@example.org", None),
    # where a value begins, or a value the request does not hold, is the model's call
    ("amazon_shopping", '(product="', "buy this", None),
    ("amazon_shopping", '(product="lapt', "buy this", None),
    # an integer may go on; outside the grammar there is nothing to guess
    ("amazon_shopping", '(product="pen", quantity=2', "", (")", True)),
    ("amazon_shopping", '(colour="red"', "", None),
    ("amazon_shopping", 'product="pen"', "", None),
])
def test_continuation_follows_the_schema_and_the_request(function, body, request_text, expected):
    assert continuation(_args(function), body, request_text) == expected


def _tiny():
    """The tiny byte-level tokenizer, functional token ids and constraint of test_generation, and a drafter."""
    pytest.importorskip("transformers")
    from test_generation import _tiny_constraint

    tokenizer, function_ids, constraint = _tiny_constraint()
    no_function, end = len(tokenizer) + len(BUILTIN), len(tokenizer) + len(BUILTIN) + 1
    drafter = CallDrafter.for_registry(BUILTIN, function_ids, no_function, end,
                                       lambda text: tokenizer.encode(text, add_special_tokens=False),
                                       lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
    drafter.max_draft = 16  # the tiny tokenizer splits words finer than a real one
    return tokenizer, function_ids, no_function, end, drafter, constraint


def test_drafter_proposes_the_schemas_tokens_and_nothing_it_cannot_retokenize():
    tokenizer, function_ids, no_function, end, drafter, _ = _tiny()
    email = function_ids[BUILTIN.names().index("send_email")]
    assert tokenizer.decode(drafter.propose([email])) == '(recipient="'
    assert drafter.propose([no_function]) == [end]
    body = tokenizer.encode('(recipient="ann@example.com", subject="the trip")', add_special_tokens=False)
    assert drafter.propose([email, *body]) == [end]
    # a value part-way through a character (a byte token of 阿) cannot be tokenized again: no draft
    text = function_ids[BUILTIN.names().index("send_text_message")]
    ids = tokenizer.encode('(recipient="阿强"', add_special_tokens=False)
    cut = next(i for i in range(1, len(ids)) if "\ufffd" in tokenizer.decode(ids[:i]))
    assert drafter.propose([text, *ids[:cut]], "发信息告诉阿强门开着") == []
    draft = drafter.propose([email, *tokenizer.encode('(recipient="ann@', add_special_tokens=False)],
                            "email ann@example.com about the trip")
    assert 0 < len(draft) <= drafter.max_draft
    assert 'example.com about the trip", subject="'.startswith(tokenizer.decode(draft))
    # what is sure runs on: the schema's opening, then the request's one address
    draft = tokenizer.decode(drafter.propose([email], "email ann@example.com about the trip"))
    assert len(draft) > len('(recipient="') and '(recipient="ann@example.com", subject="'.startswith(draft)


@pytest.mark.parametrize("request_text, call", [
    ("please email umar.f@company.co about the car repair, thanks",
     '(recipient="umar.f@company.co", subject="the car repair")'),
    ("发信息告诉孙阿姨晚安", '(recipient="孙阿姨", message="晚安")'),
    ("schedule grooming for the puppy", '(pet="puppy", service="grooming")'),
])
@pytest.mark.parametrize("with_constraint", [False, True])
def test_drafted_decoding_gives_greedys_tokens_in_fewer_passes(request_text, call, with_constraint):
    """A model that writes `call` when what it was fed is the call so far, and garbage otherwise: a draft token
    left in its cache by mistake would change the answer. Drafted decoding must answer token for token as one
    token a pass does, in fewer passes, whether drafts are taken whole, in part or not at all."""
    tokenizer, function_ids, _, end, drafter, constraint = _tiny()
    name = {"孙": "send_text_message", "@": "send_email"}.get(next((c for c in "孙@" if c in request_text), ""),
                                                              "pet_care")
    token = function_ids[BUILTIN.names().index(name)]
    target = [token, *tokenizer.encode(call, add_special_tokens=False), end]

    def model(fed: list[int]) -> np.ndarray:
        logits = np.zeros(end + 1, np.float32)
        right = len(fed) < len(target) and fed == target[:len(fed)]
        logits[target[len(fed)] if right else 7] = 10.0
        return logits

    def run(drafted: bool) -> tuple[list[int], int]:
        cache, passes = [], 0

        def step_many(tokens: list[int], discard: int = 0) -> np.ndarray:
            nonlocal passes
            passes += 1
            del cache[len(cache) - discard:]
            rows = []
            for t in tokens:
                cache.append(t)
                rows.append(model(cache))
            return np.stack(rows)

        first = np.zeros(end + 1, np.float32)
        first[token] = 1
        ids = greedy_decode(first, lambda t: step_many([t])[-1], [token, end - 1], end, 64,
                            constraint=constraint if with_constraint else None, request=request_text,
                            drafter=drafter if drafted else None, step_many=step_many)
        return ids, passes

    (plain, plain_passes), (drafted, drafted_passes) = run(False), run(True)
    assert plain == target and drafted == target
    assert plain_passes == len(target) - 1 and drafted_passes < plain_passes / 2
