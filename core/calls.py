"""The call grammar: how a function call is written as text, parsed back and validated.

    <nexa_k>(name="value", count=2)<nexa_end>      one of the registered functions
    <nexa_none><nexa_end>                           no function fits the request

Strings are double-quoted with backslash escapes for `\\`, `"`, newline and tab; integers are bare.
Anything after `<nexa_end>` (such as an optional "Function description: ...") is ignored.
`parse_call` and `validate_call` never raise on any input: they return a `Call` or a `CallError`.
Every function takes the registry to read calls against (default: the ten, `BUILTIN`); a model's own registry
(the ten plus the user functions it was extended with) comes from its config or manifest. This module knows
the registry (`octopus.functions`) and nothing about models or tokenizers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from octopus.functions import BUILTIN, END_TOKEN, NO_FUNCTION_TOKEN, Function, Registry


@dataclass(frozen=True)
class Call:
    function: str | None  # None: the no-function answer
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallError:
    kind: str  # "syntax", "unknown_function", "invalid_arguments"
    message: str
    function: str | None = None  # set when the functional token itself was read


ParseResult = Call | CallError

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
_TOKEN_RE = re.compile(r"\s*(<nexa_[0-9]+>|<nexa_none>)")
_NAME_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")
_INT_RE = re.compile(r"-?[0-9]+")


def _quote(value: str) -> str:
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def format_call(function: str | None, arguments: dict[str, Any] | None = None,
                registry: Registry = BUILTIN) -> str:
    """Write a call in the grammar; arguments follow the registry's order. Raises on unknown names."""
    if function is None:
        return NO_FUNCTION_TOKEN + END_TOKEN
    spec = registry.get(function)
    arguments = arguments or {}
    unknown = set(arguments) - {a.name for a in spec.arguments}
    if unknown:
        raise ValueError(f"{function} has no argument(s) {sorted(unknown)}")
    parts = []
    for arg in spec.arguments:
        if arg.name in arguments:
            value = arguments[arg.name]
            text = _quote(value) if isinstance(value, str) else str(int(value))
            parts.append(f"{arg.name}={text}")
    return f"{registry.token_for(function)}({', '.join(parts)}){END_TOKEN}"


def _read_string(text: str, pos: int) -> tuple[str, int] | None:
    """Read a quoted string starting at text[pos] == '"'; return (value, position after it)."""
    out = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _UNESCAPES:
                return None
            out.append(_UNESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return None


def _read_arguments(text: str, pos: int) -> tuple[dict[str, Any], int] | str:
    """Read `name=value, ...)` after the opening parenthesis; return (arguments, position) or an error."""
    args: dict[str, Any] = {}
    if text[pos:].lstrip().startswith(")"):
        return args, text.index(")", pos) + 1
    while True:
        m = _NAME_RE.match(text, pos)
        if not m:
            return f"expected an argument name at offset {pos}"
        name, pos = m.group(1), m.end()
        if name in args:
            return f"argument {name!r} given twice"
        if pos < len(text) and text[pos] == '"':
            read = _read_string(text, pos)
            if read is None:
                return f"unterminated or badly escaped string for {name!r}"
            args[name], pos = read
        else:
            m = _INT_RE.match(text, pos)
            if not m:
                return f"expected a quoted string or an integer for {name!r}"
            if len(m.group(0).lstrip("-")) > 18:  # int() refuses over 4,300 digits; no argument needs 19
                return f"integer for {name!r} is too long ({len(m.group(0))} characters)"
            args[name], pos = int(m.group(0)), m.end()
        rest = text[pos:]
        stripped = rest.lstrip()
        pos += len(rest) - len(stripped)
        if stripped.startswith(","):
            pos += 1
        elif stripped.startswith(")"):
            return args, pos + 1
        else:
            return f"expected ',' or ')' after {name!r}"


def parse_call(text: Any, registry: Registry = BUILTIN) -> ParseResult:
    """Parse model output into a Call (not yet validated) or a CallError. Never raises."""
    if not isinstance(text, str):
        return CallError("syntax", f"expected text, got {type(text).__name__}")
    m = _TOKEN_RE.match(text)
    if not m:
        return CallError("syntax", "output does not start with a functional token")
    token, pos = m.group(1), m.end()
    if token == NO_FUNCTION_TOKEN:
        return Call(None, {})
    spec = registry.for_token(token)
    if spec is None:
        return CallError("unknown_function", f"{token} is not a registered functional token")
    if not text[pos:].lstrip().startswith("("):
        return CallError("syntax", f"expected '(' after {token}", spec.name)
    pos = text.index("(", pos) + 1
    read = _read_arguments(text, pos)
    if isinstance(read, str):
        return CallError("syntax", read, spec.name)
    args, pos = read
    if not text[pos:].lstrip().startswith(END_TOKEN):
        return CallError("syntax", f"expected {END_TOKEN} after the arguments", spec.name)
    return Call(spec.name, args)


def argument_errors(spec: Function, arguments: dict[str, Any]) -> list[str]:
    """Every way `arguments` breaks the function's argument spec (empty when they fit)."""
    errors = []
    known = {a.name for a in spec.arguments}
    errors += [f"unknown argument {name!r}" for name in arguments if name not in known]
    for arg in spec.arguments:
        if arg.name not in arguments:
            if arg.required:
                errors.append(f"missing required argument {arg.name!r}")
            continue
        value = arguments[arg.name]
        if arg.type == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                errors.append(f"{arg.name!r} must be an integer")
            elif arg.minimum is not None and value < arg.minimum:
                errors.append(f"{arg.name!r} must be at least {arg.minimum}")
            continue
        if not isinstance(value, str):
            errors.append(f"{arg.name!r} must be a string")
        elif not value.strip():
            errors.append(f"{arg.name!r} must not be empty")
        elif arg.enum is not None and value not in arg.enum:
            errors.append(f"{arg.name!r} must be one of {', '.join(arg.enum)}")
        elif arg.pattern is not None and not re.fullmatch(arg.pattern, value, re.DOTALL):
            errors.append(f"{arg.name!r} is not a valid value: {value!r}")
    return errors


def validate_call(call: ParseResult, registry: Registry = BUILTIN) -> ParseResult:
    """Check a parsed call against the registry; returns the call or a CallError. Never raises.

    String values lose surrounding whitespace first: a model that copies "12 veggie burger" from the request
    may write `dish=" veggie burger"` (the word's token carries its leading space), and no argument means the
    space."""
    if isinstance(call, CallError) or call.function is None:
        return call
    try:
        spec = registry.get(call.function)
    except KeyError as exc:
        return CallError("unknown_function", str(exc.args[0]))
    arguments = {k: v.strip() if isinstance(v, str) else v for k, v in call.arguments.items()}
    errors = argument_errors(spec, arguments)
    if errors:
        return CallError("invalid_arguments", "; ".join(errors), call.function)
    return call if arguments == call.arguments else Call(call.function, arguments)


def parse_and_validate(text: Any, registry: Registry = BUILTIN) -> ParseResult:
    return validate_call(parse_call(text, registry), registry)
