"""What every runtime returns for one request: the raw text, the parsed call and where the time went.

Shared by the torch agent and the torch-free ONNX runtime, so `ask` and `eval` have one output contract, and
both decode with the same loop (`greedy_decode`).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class Drafter(Protocol):
    """What the decode loop asks of a drafter (`octopus.drafting.CallDrafter`, which imports this module)."""

    def propose(self, generated: Sequence[int], request: str = "") -> list[int]: ...


def greedy_decode(first_logits, step: Callable[[int], Any], first_token_ids: Sequence[int], end_id: int,
                  max_new_tokens: int, reject_bias: float = 0.0, constraint: ArgumentConstraint | None = None,
                  request: str = "", drafter: Drafter | None = None,
                  step_many: Callable[[list[int], int], Any] | None = None) -> list[int]:
    """The one decode loop of every back-end: the first token constrained to `first_token_ids` (the functional
    tokens, then the no-function token last), then greedy until `end_id` or `max_new_tokens`. `reject_bias` is
    added to the no-function token's logit for that first choice only. With `constraint`, the values of
    arguments the schema pins down (enumerated ones; ones copied from `request`) keep to it
    (`ArgumentConstraint`). `first_logits` are the prefill's last-position logits and `step(token)` feeds one
    token and returns the next logits; both may be numpy arrays or torch tensors (anything with `.argmax()`,
    `.argsort()`, negation and indexing).

    With a `drafter` (`octopus.drafting.CallDrafter`) and `step_many(tokens, discard)` (drop the last `discard`
    tokens fed, feed `tokens`, return one row of logits per token), each pass feeds the last token and the
    draft, and keeps the draft's tokens while this loop's own choice agrees with them: the same tokens, in
    fewer passes."""
    allowed = [int(t) for t in first_token_ids]
    generated = [allowed[first_choice([float(first_logits[t]) for t in allowed], reject_bias)]]

    def choose(logits) -> int:
        return constraint.choose(generated, logits, request) if constraint is not None else int(logits.argmax())

    if drafter is None or step_many is None:
        while generated[-1] != end_id and len(generated) < max_new_tokens:
            generated.append(choose(step(generated[-1])))
        return generated
    discard = 0
    while generated[-1] != end_id and len(generated) < max_new_tokens:
        draft = drafter.propose(generated, request)[:max_new_tokens - len(generated) - 1]
        rows = step_many([generated[-1], *draft], discard)
        for i, logits in enumerate(rows):
            generated.append(choose(logits))
            if i == len(draft) or generated[-1] != draft[i] or generated[-1] == end_id:
                discard = len(draft) - i  # the draft's tokens after this one are in the cache but not taken
                break
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


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-ins for the 256 bytes (GPT-2's table), inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


_BYTE_DECODER = _byte_decoder()
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte fallback
MANY_SPANS = 64  # a copied value with a pattern is chosen among the request's matching spans up to this many


class ArgumentConstraint:
    """Constrained decoding of the argument values a schema pins down; every other token is plain greedy.

    - **Enumerated** values (a pet service, a recycling material, a design style, a user function's `enum`):
      inside the quoted value the next token is the best-scoring one that keeps the value a prefix of an allowed
      value or closes it as one. Without it the model now and then writes a value the schema does not have
      (`service="pet sitter"`): the call fails validation and the device runs nothing.
    - **Copied** values (`Argument.copied`: an email address, a text message, a place): the next token is the
      best-scoring one that keeps the value a span of the request that begins at a word's start, or closes a
      non-empty one at a word's end (in Chinese, any character is a word's edge); with a `pattern` too, one of
      the request's spans that match it (an address in the request, not "a quick email"). Without it the model
      now and then misspells what it copies: `recipient="maru.f@company.co"` for "email umar.f@company.co", a
      well-formed address of somebody else that validation cannot catch. A request with a quote or backslash
      (its values would be escaped) is left to greedy.

    Values are compared as UTF-8 bytes, so a Chinese character split over two tokens is checked whole. A value
    the constraint cannot reach (it began outside it, or no token fits) stays greedy. It reads the tokens'
    bytes, not the model, so it is the same for every back-end."""

    def __init__(self, enums: Mapping[int, Mapping[str, Sequence[str]]], decode: Callable[[list[int]], str],
                 copied: Mapping[int, Mapping[str, str | None]] | None = None,
                 token_string: Callable[[int], str | None] | None = None):
        """`enums`: functional token id -> {argument: allowed values}; `copied`: functional token id -> {argument
        copied from the request: the pattern its value must match, or None}; `decode(ids)`: the tokenizer's text;
        `token_string(id)`: the vocabulary's string for a token (for one that is part of a UTF-8 character, which
        `decode` cannot show)."""
        self.enums = {int(t): {a: tuple(v.encode() + b'"' for v in values) for a, values in args.items()}
                      for t, args in enums.items() if args}
        self.copied = {int(t): dict(args) for t, args in (copied or {}).items() if args}
        self.decode = decode
        self.token_string = token_string
        self._bytes: dict[int, bytes] = {}

    @classmethod
    def for_registry(cls, registry, function_ids: Sequence[int], decode: Callable[[list[int]], str],
                     token_string: Callable[[int], str | None] | None = None) -> ArgumentConstraint:
        """The constraint for a model's function table (`functions[k]` is called with `function_ids[k]`)."""
        pairs = list(zip(function_ids, registry))
        return cls({int(t): {a.name: a.enum for a in f.arguments if a.enum} for t, f in pairs}, decode,
                   {int(t): {a.name: a.pattern for a in f.arguments if a.copied} for t, f in pairs},
                   token_string)

    def piece(self, token: int) -> bytes:
        """The bytes a token adds to the text (special tokens add none)."""
        if token not in self._bytes:
            text = self.decode([token])
            raw = text.encode()
            if "\ufffd" in text and self.token_string is not None:  # a part of a character: the vocabulary's bytes
                string = self.token_string(token) or ""
                if (match := _BYTE_TOKEN.fullmatch(string)) is not None:
                    raw = bytes([int(match.group(1), 16)])
                elif string and all(c in _BYTE_DECODER for c in string):
                    raw = bytes(_BYTE_DECODER[c] for c in string)
            self._bytes[token] = raw
        return self._bytes[token]

    def state(self, generated: list[int]) -> tuple[str, bytes] | None:
        """(argument, its value's bytes so far) when the call after the functional token ends inside a quoted
        value, as `open_string`; the value may end part-way through a character."""
        text = b"".join(self.piece(t) for t in generated[1:])
        for cut in range(4):  # a UTF-8 character is at most 4 bytes: up to 3 may be pending
            try:
                whole = text[:len(text) - cut].decode()
            except UnicodeDecodeError:
                continue
            opened = open_string(whole)
            return None if opened is None else (opened[0], opened[1].encode() + text[len(text) - cut:])
        return None

    def choose(self, generated: list[int], logits, request: str = "") -> int:
        """The next token after `generated` (functional token first) given the step's logits and the request."""
        function = int(generated[0])
        enums, copied = self.enums.get(function, {}), self.copied.get(function, {})
        state = self.state(generated) if enums or copied else None
        if state is None:
            return int(logits.argmax())
        name, partial = state
        spans = _Spans.of(request) if name in copied else None
        pattern = copied.get(name)
        closed = enums.get(name) or (spans.matching(pattern) if spans is not None and pattern else None)
        if closed:  # a list of values: the schema's, or the request's few spans that match the pattern
            if not any(v.startswith(partial) for v in closed):
                return int(logits.argmax())  # the value began outside the constraint
            fits = lambda p: any(v.startswith(partial + p) or (partial + p).startswith(v) for v in closed)  # noqa: E731
        elif spans is not None:
            if not spans.continues(partial):
                return int(logits.argmax())

            def fits(p: bytes) -> bool:
                value = partial + p
                end = value.find(b'"')
                return spans.continues(value) if end < 0 else spans.closes(value[:end], pattern)
        else:
            return int(logits.argmax())
        def takes(token: int) -> bool:  # a token of no text (a functional token: Gemma once wrote
            piece = self.piece(token)  # body="<nexa_0>邮") never goes in a value
            return bool(piece) and fits(piece)
        best = int(logits.argmax())
        if takes(best):  # the usual case, without ranking the vocabulary
            return best
        for token in (-logits).argsort().tolist():
            if takes(token):
                return int(token)
        return int(logits.argmax())


def _is_cjk(char: str) -> bool:
    """Chinese, Japanese and full-width characters: wider than `function_file.CJK_RE` (which tells a request's
    language by its ideographs), since kana and full-width letters have no spaces between words either."""
    return "\u2e80" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or "\uff00" <= char <= "\uffef"


class _Spans:
    """Where a copied value may begin and end in a request, in UTF-8 byte offsets: at word boundaries (a copy
    of "umar.f@company.co" cannot begin inside it, as "mar.f@company.co"), and at any character in Chinese,
    which has no spaces between words."""

    def __init__(self, source: bytes, starts: set[int], ends: set[int]):
        self.source, self.starts, self.ends = source, starts, ends
        self._matching: dict[str, tuple[bytes, ...]] = {}

    @classmethod
    @functools.lru_cache(maxsize=16)  # a request's spans, read by every step and draft (thread-safe)
    def of(cls, request: str) -> _Spans | None:
        if '"' in request or "\\" in request:  # its values would be written with escapes: left to greedy
            return None
        offsets = [0]
        for char in request:
            offsets.append(offsets[-1] + len(char.encode()))

        def boundary(i: int) -> bool:
            before, after = request[i - 1:i], request[i:i + 1]
            return (not before or not after or not (before.isalnum() and after.isalnum())
                    or _is_cjk(before) or _is_cjk(after))
        starts = {offsets[i] for i in range(len(request))  # not at a space or a mark: ".f@company.co" is no copy
                  if boundary(i) and not request[i].isspace() and not unicodedata.category(request[i]).startswith("P")}
        ends = {offsets[i] for i in range(1, len(request) + 1) if boundary(i) and not request[i - 1].isspace()}
        return cls(request.encode(), starts, ends)

    def _at(self, value: bytes):
        at = self.source.find(value)
        while at >= 0:
            if at in self.starts:
                yield at
            at = self.source.find(value, at + 1)

    def continues(self, value: bytes) -> bool:
        """`value` (which may end inside a character) begins a span: the start of a word, then what follows."""
        return not value or next(self._at(value), None) is not None

    def matching(self, pattern: str) -> tuple[bytes, ...]:
        """The spans that match `pattern` whole, closed by their quote (as `ArgumentConstraint.enums` holds),
        when there are 1 to MANY_SPANS of them (an address or two); () when there are none or more (a contact
        name is any span), and `closes` then checks the pattern on the span written."""
        if pattern not in self._matching:
            regex = re.compile(pattern)
            found = {self.source[a:b] for a in self.starts for b in self.ends if b > a}
            matching = sorted(v + b'"' for v in found if regex.fullmatch(v.decode()))
            self._matching[pattern] = tuple(matching) if len(matching) <= MANY_SPANS else ()
        return self._matching[pattern]

    def closes(self, value: bytes, pattern: str | None = None) -> bool:
        """`value` is a whole span, non-empty, from a word's start to a word's end (and matches `pattern`)."""
        if not value or not any(at + len(value) in self.ends for at in self._at(value)):
            return False
        return pattern is None or re.fullmatch(pattern, value.decode()) is not None


def spans_matching(request: str, pattern: str) -> tuple[str, ...]:
    """The request's word-bounded spans that match `pattern` whole, as the constraint allows them for a copied
    value (up to MANY_SPANS; () when there are none or more)."""
    spans = _Spans.of(request)
    return () if spans is None else tuple(v[:-1].decode() for v in spans.matching(pattern))


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
