"""What every runtime returns for one request: the raw text, the parsed call and where the time went.

Shared by the torch agent and the torch-free ONNX runtime, so `ask` and `eval` have one output contract, and
both decode with the same loop (`greedy_decode`).
"""

from __future__ import annotations

import math
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
                  max_new_tokens: int, reject_bias: float = 0.0) -> list[int]:
    """The one decode loop of every back-end: the first token constrained to `first_token_ids` (the functional
    tokens, then the no-function token last), then greedy until `end_id` or `max_new_tokens`. `reject_bias` is
    added to the no-function token's logit for that first choice only. `first_logits` are the prefill's
    last-position logits and `step(token)` feeds one token and returns the next logits; both may be numpy arrays
    or torch tensors (anything with `.argmax()` and indexing)."""
    allowed = [int(t) for t in first_token_ids]
    generated = [allowed[first_choice([float(first_logits[t]) for t in allowed], reject_bias)]]
    while generated[-1] != end_id and len(generated) < max_new_tokens:
        generated.append(int(step(generated[-1]).argmax()))
    return generated


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
