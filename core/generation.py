"""What every runtime returns for one request: the raw text, the parsed call and where the time went.

Shared by the torch agent and the torch-free ONNX runtime, so `ask` and `eval` have one output contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from octopus.calls import CallError, ParseResult


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
