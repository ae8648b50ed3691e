"""What the button and the query endpoint hand to the daemon's worker: a request, and the refusal when busy."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

GESTURES = ("short", "hold")


@dataclass
class Request:
    gesture: str  # short | hold | ask (an explicit query from the endpoint or CLI)
    query: str | None = None
    source: str = "button"
    future: concurrent.futures.Future | None = field(default=None, repr=False)


class Busy(Exception):
    """A request arrived while the worker was busy: dropped, by design."""
