"""Drafts of what a call will say next, so the decode loop can check several tokens in one forward pass.

Decoding a call is the bulk of a request's time on a Pi-class CPU (about 20 steps of one token each), yet much
of a call is fixed by its schema or already in the request: after `<nexa_0>` comes `(recipient="`, a copied
address goes on as the request spells it, a closed value is followed by the next required argument or by
`)<nexa_end>`. `CallDrafter.propose` writes that continuation as text, tokenizes it and returns its tokens;
`octopus.generation.greedy_decode` feeds the last token and the draft together and keeps the draft's tokens
for as long as greedy decoding (with its constraint) picks them, plus the one greedy picks where they part
(speculative decoding with a draft that costs no model). The answer is greedy's; only how many passes it takes
changes. This module knows the call grammar (`octopus.calls`) and the function table; it knows nothing about
models or back-ends, and a tokenizer only through `encode` and `decode`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from octopus.functions import Argument
from octopus.generation import open_string, spans_matching

# a draft longer than this costs more when it is wrong than it saves when it is right (measured: a pass of
# 1 + 6 tokens takes ~1.5x a pass of one on 2 cores, int8)
MAX_DRAFT = 6
_WRITTEN = re.compile(r'\s*,?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*"|-?[0-9]+)')


class CallDrafter:
    """Proposes the next tokens of a call from its function's argument list and the request."""

    def __init__(self, functions: Mapping[int, Sequence[Argument]], no_function_id: int, end_id: int,
                 encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
                 max_draft: int = MAX_DRAFT):
        """`functions`: functional token id -> its arguments in the order calls write them; `encode(text)` and
        `decode(ids)`: the tokenizer, without special tokens."""
        self.functions = {int(t): tuple(args) for t, args in functions.items()}
        self.no_function_id, self.end_id = int(no_function_id), int(end_id)
        self.encode, self.decode = encode, decode
        self.max_draft = max_draft

    @classmethod
    def for_registry(cls, registry, function_ids: Sequence[int], no_function_id: int, end_id: int,
                     encode: Callable[[str], list[int]], decode: Callable[[list[int]], str]) -> CallDrafter:
        return cls({int(t): f.arguments for t, f in zip(function_ids, registry)}, no_function_id, end_id,
                   encode, decode)

    def propose(self, generated: Sequence[int], request: str = "") -> list[int]:
        """Tokens likely to follow `generated` (its functional token first); [] when there is no good guess."""
        first = int(generated[0])
        if first == self.no_function_id:
            return [self.end_id] if len(generated) == 1 else []
        arguments = self.functions.get(first)
        if arguments is None or generated[-1] == self.end_id:
            return []
        body_ids = [int(t) for t in generated[1:]]
        body = self.decode(body_ids)
        if "\ufffd" in body:  # ends part-way through a character: its text cannot be tokenized again
            return []
        guess = continuation(arguments, body, request)
        if guess is None:
            return []
        text, ends = guess
        for _ in range(3):  # what follows the guess, while it is sure: `(recipient="` and then the address
            more = None if ends or not text else continuation(arguments, body + text, request)
            if not more or not more[0]:
                break
            text, ends = text + more[0], more[1]
        ids = self.encode(body + text) if text else body_ids
        if ids[:len(body_ids)] != body_ids:  # the call's own tokens are not the tokenizer's: no safe draft
            return []
        draft = ids[len(body_ids):] + ([self.end_id] if ends else [])
        return draft[:self.max_draft]


def continuation(arguments: Sequence[Argument], body: str, request: str) -> tuple[str, bool] | None:
    """(text likely to follow, whether the call then ends) for a call whose text after the functional token is
    `body`; None when there is no good guess (the start of a value the image decides, say)."""
    if not body:
        return "(" + _next(arguments, ()), False
    if not body.startswith("("):
        return None
    opened = open_string(body[1:])
    if opened is not None:
        return _inside(arguments, *opened, request)
    position, written = 1, []
    while (match := _WRITTEN.match(body, position)) is not None:
        written.append(match.group(1))
        position = match.end()
    rest = body[position:]
    if any(name not in {a.name for a in arguments} for name in written):  # left the schema: no guess
        return None
    if rest == ")":
        return "", True
    if rest.rstrip() == "," and written:  # the model goes on: the next argument in order, optional or not
        names = [a.name for a in arguments]
        following = arguments[names.index(written[-1]) + 1:]
        return ((" " if rest == "," else "") + _opening(following[0]), False) if following else None
    if rest or not written:  # an integer may go on, or the call left the grammar: nothing sure to add
        return None
    return _after(arguments, written)


def _inside(arguments: Sequence[Argument], name: str, partial: str, request: str) -> tuple[str, bool] | None:
    """Inside a quoted value: the rest of the one enumerated value it can become, or the rest of the request
    after the copy so far (a copied or free value that follows the request's words)."""
    spec = next((a for a in arguments if a.name == name), None)
    if spec is None:
        return None
    if spec.enum:
        values = [v for v in spec.enum if v.startswith(partial)]
        if len(values) != 1:
            return None
        text, ends = _after(arguments, _names_through(arguments, name))
        return values[0][len(partial):] + '"' + text, ends
    if '"' in request or "\\" in request:  # its values would be escaped: left to the model
        return None
    if not partial:  # where a value begins is the model's call, unless one span of the request can be it
        only = spans_matching(request, spec.pattern) if spec.copied and spec.pattern else ()
        if len(only) != 1:
            return None
        text, ends = _after(arguments, _names_through(arguments, name))
        return only[0] + '"' + text, ends
    at = request.find(partial)
    if at < 0:
        return None
    rest = request[at + len(partial):]
    if rest:
        return rest, False
    text, ends = _after(arguments, _names_through(arguments, name))
    return '"' + text, ends


def _names_through(arguments: Sequence[Argument], name: str) -> list[str]:
    names = [a.name for a in arguments]
    return names[:names.index(name) + 1]


def _after(arguments: Sequence[Argument], written: Sequence[str]) -> tuple[str, bool]:
    """After a complete value: the next required argument's opening, or the call's close if none is left."""
    text = _next(arguments, written)
    return (text, False) if text else (")", True)


def _next(arguments: Sequence[Argument], written: Sequence[str]) -> str:
    """The opening of the next required argument after the last one written (`, name="` or `name=`), or "":
    optional arguments are the model's call, so the draft skips them."""
    names = [a.name for a in arguments]
    start = names.index(written[-1]) + 1 if written else 0
    for a in arguments[start:]:
        if a.required:
            return (", " if written else "") + _opening(a)
    return ""


def _opening(argument: Argument) -> str:
    return f'{argument.name}="' if argument.type == "string" else f"{argument.name}="
