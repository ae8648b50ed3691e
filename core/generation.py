"""What every runtime returns for one request: the raw text, the parsed call and where the time went.

Shared by the torch agent and the torch-free ONNX runtime, so `ask` and `eval` have one output contract, and
both decode with the same loop (`greedy_decode`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from octopus.calls import CallError, ParseResult

# the answer budget of every back-end: the longest gold call is 47 tokens (a Chinese email); an export records
# the value it was checked with in its manifest (`decoder.max_new_tokens`), and the device config may lower it
MAX_NEW_TOKENS = 64


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
                  max_new_tokens: int) -> list[int]:
    """The one decode loop of every back-end: the first token constrained to `first_token_ids` (the functional
    tokens and the no-function token), then greedy until `end_id` or `max_new_tokens`. `first_logits` are the
    prefill's last-position logits and `step(token)` feeds one token and returns the next logits; both may be
    numpy arrays or torch tensors (anything with `.argmax()` and list indexing)."""
    allowed = [int(t) for t in first_token_ids]
    generated = [allowed[int(first_logits[allowed].argmax())]]
    while generated[-1] != end_id and len(generated) < max_new_tokens:
        generated.append(int(step(generated[-1]).argmax()))
    return generated
