"""What every runtime returns for one request: the raw text, the parsed call and where the time went.

Shared by the torch agent and the torch-free ONNX runtime, so `ask` and `eval` have one output contract, and
both decode with the same loop (`greedy_decode`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from octopus.calls import CallError, ParseResult
from octopus.function_file import language_of

# the answer budget of every back-end: the longest gold call is 47 tokens (a Chinese email); an export records
# the value it was checked with in its manifest (`decoder.max_new_tokens`), and the device config may lower it
MAX_NEW_TOKENS = 64
# a bias toward "no function" on the first token, per request language: positive declines more requests that fit
# no function, at the cost of declining some that fit one (`bench/reject_bias.py` measures the trade)
LANGUAGES = ("en", "zh")
MAX_REJECT_BIAS = 50.0


@dataclass
class Generation:
    raw: str
    result: ParseResult
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def function(self) -> str | None:
        return None if isinstance(self.result, CallError) else self.result.function

    @property
    def arguments(self) -> dict[str, Any]:
        return {} if isinstance(self.result, CallError) else dict(self.result.arguments)


def greedy_decode(first_logits, step: Callable[[int], Any], first_token_ids: Sequence[int], end_id: int,
                  max_new_tokens: int, reject_bias: float = 0.0, enums: EnumConstraint | None = None) -> list[int]:
    """The one decode loop of every back-end: the first token constrained to `first_token_ids` (the functional
    tokens, then the no-function token last), then greedy until `end_id` or `max_new_tokens`. `reject_bias` is
    added to the no-function token's logit for that first choice only. With `enums`, a value of an argument
    whose schema lists its values is one of them (`EnumConstraint`). `first_logits` are the prefill's
    last-position logits and `step(token)` feeds one token and returns the next logits; both may be numpy arrays
    or torch tensors (anything with `.argmax()`, `.argsort()`, negation and indexing)."""
    allowed = [int(t) for t in first_token_ids]
    generated = [allowed[first_choice([float(first_logits[t]) for t in allowed], reject_bias)]]
    while generated[-1] != end_id and len(generated) < max_new_tokens:
        logits = step(generated[-1])
        generated.append(enums.choose(generated, logits) if enums is not None else int(logits.argmax()))
    return generated


_ARGUMENT_OPENS = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"')


def open_string(text: str) -> tuple[str, str] | None:
    """(argument name, value so far) when `text`, a call after its functional token, ends inside the quoted
    value of an argument; None otherwise. Complete strings are skipped whatever they contain."""
    position = 0
    while (opened := _ARGUMENT_OPENS.search(text, position)) is not None:
        value, i = [], opened.end()
        while i < len(text) and text[i] != '"':
            if text[i] == "\\":
                value.append(text[i + 1:i + 2])
                i += 2
                continue
            value.append(text[i])
            i += 1
        if i >= len(text):
            return opened.group(1), "".join(value)
        position = i + 1
    return None


class EnumConstraint:
    """Constrained decoding of enumerated arguments: inside the quoted value of an argument whose schema lists
    its values (a pet service, a recycling material, a design style), the next token is the best-scoring one
    that keeps the value a prefix of one of them or closes it as one of them; every other token is plain
    greedy. Without it the model now and then writes a value the schema does not have (`service="pet sitter"`,
    `material="fruit"`): the call fails validation and the device runs nothing (12 of 400 test rows of the
    shipped default, 8 of them with an enumerated value). The constraint reads the text decoded so far, so it
    is the same for every back-end and every tokenizer."""

    def __init__(self, enums: Mapping[int, Mapping[str, Sequence[str]]], decode: Callable[[list[int]], str]):
        """`enums`: functional token id -> {argument: allowed values}; `decode(ids)`: the tokenizer's text."""
        self.enums = {int(t): {a: tuple(v) for a, v in args.items()} for t, args in enums.items() if args}
        self.decode = decode
        self._texts: dict[int, str] = {}

    @classmethod
    def for_registry(cls, registry, function_ids: Sequence[int], decode: Callable[[list[int]], str]):
        """The constraint for a model's function table (`functions[k]` is called with `function_ids[k]`)."""
        return cls({int(t): {a.name: a.enum for a in f.arguments if a.enum}
                    for t, f in zip(function_ids, registry)}, decode)

    def text(self, token: int) -> str:
        if token not in self._texts:
            self._texts[token] = self.decode([token])
        return self._texts[token]

    def choose(self, generated: list[int], logits) -> int:
        """The next token after `generated` (functional token first) given the step's logits."""
        enums = self.enums.get(int(generated[0]))
        state = open_string(self.decode(generated[1:])) if enums else None
        if state is None or state[0] not in enums:
            return int(logits.argmax())
        name, partial = state
        closed = [value + '"' for value in enums[name]]
        if not any(value.startswith(partial) for value in closed):
            return int(logits.argmax())  # the value began outside the constraint (one token opened and wrote it)
        for token in (-logits).argsort().tolist():
            piece = self.text(token)
            if piece and any(v.startswith(partial + piece) or (partial + piece).startswith(v) for v in closed):
                return int(token)
        return int(logits.argmax())


def first_choice(scores: Sequence[float], reject_bias: float = 0.0) -> int:
    """Which allowed first token greedy decoding takes (an index into them; the no-function token is last):
    the best score after the bias, the first of equal best as argmax. Logits or log-probs give the same."""
    biased = [*scores[:-1], scores[-1] + reject_bias]
    return max(range(len(biased)), key=biased.__getitem__)


def reject_bias_for(biases: Mapping[str, float], query: str) -> float:
    """The bias toward "no function" for `query`'s language ("en" or "zh"; 0 where none is set)."""
    return float(biases.get(language_of(query), 0.0)) if biases else 0.0


def parse_reject_bias(items: Sequence[str]) -> dict[str, float]:
    """`["zh=1.5", "en=0"]` -> {"zh": 1.5, "en": 0.0}; a ValueError with a one-line message otherwise."""
    out = {}
    for item in items:
        language, sep, raw = item.partition("=")
        language = language.strip()
        if not sep or language not in LANGUAGES:
            raise ValueError(f"--reject-bias takes LANG=NUMBER with LANG one of {', '.join(LANGUAGES)}, got {item!r}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"--reject-bias {language}: {raw!r} is not a number") from None
        if not math.isfinite(value) or abs(value) > MAX_REJECT_BIAS:
            raise ValueError(f"--reject-bias {language}: must be between -{MAX_REJECT_BIAS:g} and "
                             f"{MAX_REJECT_BIAS:g}, got {raw}")
        out[language] = value
    return out
