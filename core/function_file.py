"""A user function file: functions to teach a model (`octopus train extend`), declared in TOML or JSON.

    [[functions]]
    name = "lamp_control"
    description_en = "Turn the lamp in a room on or off."
    description_zh = "打开或关闭某个房间的灯。"
    action = { webhook = "http://homeassistant.local:8123/api/webhook/octopus-lamp" }

    [[functions.arguments]]
    name = "room"
    type = "string"
    description_en = "The room the lamp is in."
    description_zh = "灯所在的房间。"
    values_en = ["hallway", "garage"]     # optional: more values for generated requests
    values_zh = ["走廊", "车库"]
    # copied = true                       # optional: the value is always words of the request (a name, a note)

    [[functions.examples]]
    request = "turn on the lamp in the kitchen"
    arguments = { room = "kitchen", state = "on" }

An example's language is Chinese when its request has Chinese characters, else English; at least
MIN_EXAMPLES of each are needed (one in four is held out to measure the new function on wordings it never
trained on). An action is one of `link` (a URL template with `{argument}` holes, recorded or POSTed to the
device's webhook like the built-in links), `webhook` (a URL the call is POSTed to as JSON) or `handler` (an
argv list run without a shell, `{argument}` holes filled per element; the device runs it only when its config
lists the function in `actions.allow_handlers`). Optionally, `concepts` (objects of the concept table) make
the function the answer when only the image decides ("help me with this" over a picture of one), its
`image_argument` filled with the object's name. Every problem is a `FunctionFileError` of one line naming
the file, the function and the key. Standard library only: the device reads function tables too.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from octopus.calls import argument_errors
from octopus.functions import ARGUMENT_TYPES, BUILTIN, Argument, Example, Function, Registry

MIN_EXAMPLES = 4  # per language
NAME_RE = re.compile(r"[a-z][a-z0-9_]{1,47}")
ARGUMENT_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
CJK_RE = re.compile(r"[\u3400-\u9fff]")
FUNCTION_KEYS = ("name", "description_en", "description_zh", "arguments", "examples", "action", "concepts",
                 "image_argument")
ARGUMENT_KEYS = ("name", "type", "description_en", "description_zh", "required", "enum", "pattern", "minimum",
                 "values_en", "values_zh", "copied")
ACTION_KINDS = ("link", "webhook", "handler")
MAX_REQUEST = 200


class FunctionFileError(ValueError):
    """A function file that cannot be used; the message is one line."""


def language_of(text: str) -> str:
    return "zh" if CJK_RE.search(text) else "en"


def load_function_file(path: str | Path, registry: Registry = BUILTIN) -> list[Function]:
    """The functions declared in a TOML or JSON file, checked against `registry` (their names must be new)."""
    path = Path(path)
    if not path.is_file():
        raise FunctionFileError(f"no function file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FunctionFileError(f"{path}: cannot read ({type(exc).__name__})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise FunctionFileError(f"{path}: not valid {kind} ({str(exc).splitlines()[0]})") from None
    try:
        return parse_functions(data, registry)
    except FunctionFileError as exc:
        raise FunctionFileError(f"{path}: {exc}") from None


def parse_functions(data: Any, registry: Registry = BUILTIN) -> list[Function]:
    if not isinstance(data, dict) or set(data) != {"functions"} or not isinstance(data["functions"], list):
        raise FunctionFileError("expected one list 'functions' ([[functions]] tables in TOML)")
    if not data["functions"]:
        raise FunctionFileError("'functions' is empty")
    out: list[Function] = []
    for index, table in enumerate(data["functions"]):
        label = f"functions[{index}]"
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            label = f"function {table['name']!r}"
        try:
            function = _function(table, registry, [f.name for f in out])
        except FunctionFileError as exc:
            raise FunctionFileError(f"{label}: {exc}") from None
        out.append(function)
    return out


def _text(table: dict, key: str, required: bool = True) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FunctionFileError(f"'{key}' must be non-empty text")
    return value.strip()


def _strings(table: dict, key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise FunctionFileError(f"'{key}' must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _unknown(table: dict, known: tuple[str, ...], where: str) -> None:
    unknown = [k for k in table if k not in known]
    if unknown:
        raise FunctionFileError(f"unknown key '{unknown[0]}' in {where} (known: {', '.join(known)})")


def _named_table(table: Any, known: tuple[str, ...], where: str, pattern: re.Pattern, longest: int) -> str:
    """Check a function's or an argument's table: a table, known keys only, a valid name (returned)."""
    if not isinstance(table, dict):
        raise FunctionFileError("must be a table")
    _unknown(table, known, where)
    name = _text(table, "name")
    if not pattern.fullmatch(name):
        raise FunctionFileError(f"'name' must be lower case letters, digits and '_', starting with a letter, "
                                f"at most {longest} characters")
    return name


def _function(table: Any, registry: Registry, earlier: list[str]) -> Function:
    name = _named_table(table, FUNCTION_KEYS, "the function", NAME_RE, 48)
    if name in registry.names() or name in earlier:
        raise FunctionFileError(f"the model has a function called {name!r} already; choose another name")
    description_en, description_zh = _text(table, "description_en"), _text(table, "description_zh")
    if not CJK_RE.search(description_zh):
        raise FunctionFileError("'description_zh' must be Chinese")
    raw_arguments = table.get("arguments", [])
    if not isinstance(raw_arguments, list):
        raise FunctionFileError("'arguments' must be a list of tables ([[functions.arguments]])")
    arguments: list[Argument] = []
    for i, arg in enumerate(raw_arguments):
        where = f"argument {arg.get('name')!r}" if isinstance(arg, dict) and isinstance(arg.get("name"), str) \
            else f"arguments[{i}]"
        try:
            arguments.append(_argument(arg, [a.name for a in arguments]))
        except FunctionFileError as exc:
            raise FunctionFileError(f"{where}: {exc}") from None
    function = Function(name, description_en, description_zh, tuple(arguments))  # what the rest is checked against
    examples = _examples(table.get("examples"), function)
    action = _action(table.get("action"), function)
    concepts, image_argument = _image_decided(table, function)
    return replace(function, examples=examples, action=action, concepts=concepts, image_argument=image_argument)


def _image_decided(table: dict, function: Function) -> tuple[tuple[str, ...], str | None]:
    """`concepts` (keys of the concept table; `octopus train extend` checks they exist and imply nothing yet)
    and `image_argument`, the string argument the pictured object's name fills."""
    concepts = _strings(table, "concepts")
    name = table.get("image_argument")
    if not concepts:
        if name is not None:
            raise FunctionFileError("'image_argument' needs 'concepts'")
        return (), None
    if len(concepts) < 2 or len(set(concepts)) != len(concepts):
        raise FunctionFileError("'concepts' needs at least two different concept keys (one in four is held out)")
    argument = function.argument(name) if isinstance(name, str) else None
    if argument is None or argument.type != "string" or argument.enum is not None:
        raise FunctionFileError("'concepts' needs 'image_argument': the free-text string argument the pictured "
                                "object's name fills")
    other = [a.name for a in function.arguments if a.required and a.name != name]
    if other:
        raise FunctionFileError(f"'concepts': the picture alone cannot give the required argument '{other[0]}'")
    return concepts, name


def _argument(table: Any, earlier: list[str]) -> Argument:
    name = _named_table(table, ARGUMENT_KEYS, "the argument", ARGUMENT_NAME_RE, 32)
    if name in earlier:
        raise FunctionFileError("declared twice")
    kind = table.get("type")
    if kind not in ARGUMENT_TYPES:
        raise FunctionFileError(f"'type' must be one of {', '.join(ARGUMENT_TYPES)}, got {kind!r}")
    required = table.get("required", True)
    if not isinstance(required, bool):
        raise FunctionFileError("'required' must be true or false")
    enum = table.get("enum")
    pattern = table.get("pattern")
    minimum = table.get("minimum")
    if enum is not None:
        if kind != "string":
            raise FunctionFileError("'enum' is for string arguments")
        enum = _strings(table, "enum")
        if len(enum) < 2 or len(set(enum)) != len(enum):
            raise FunctionFileError("'enum' needs at least two different values")
    if pattern is not None:
        if kind != "string" or not isinstance(pattern, str):
            raise FunctionFileError("'pattern' must be a regular expression, for string arguments")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise FunctionFileError(f"'pattern' is not a valid regular expression ({exc})") from None
    if minimum is not None and (kind != "integer" or not isinstance(minimum, int) or isinstance(minimum, bool)):
        raise FunctionFileError("'minimum' must be an integer, for integer arguments")
    values_en, values_zh = _strings(table, "values_en"), _strings(table, "values_zh")
    if (values_en or values_zh) and (kind != "string" or enum is not None):
        raise FunctionFileError("'values_en'/'values_zh' are for free-text string arguments (not enums)")
    copied = table.get("copied", False)
    if not isinstance(copied, bool) or (copied and (kind != "string" or enum is not None)):
        raise FunctionFileError("'copied' must be true or false, and true only for free-text string arguments")
    return Argument(name, kind, _text(table, "description_en"), _text(table, "description_zh"), required,
                    enum, pattern, minimum, values_en, values_zh, copied)


def _examples(raw: Any, function: Function) -> tuple[Example, ...]:
    if not isinstance(raw, list):
        raise FunctionFileError(f"'examples' must be a list of tables ([[functions.examples]]) with at least "
                                f"{MIN_EXAMPLES} English and {MIN_EXAMPLES} Chinese requests")
    out = []
    for i, table in enumerate(raw):
        where = f"examples[{i}]"
        if not isinstance(table, dict):
            raise FunctionFileError(f"{where} must be a table with 'request' and 'arguments'")
        _unknown(table, ("request", "arguments"), where)
        request = table.get("request")
        if not isinstance(request, str) or not request.strip() or len(request) > MAX_REQUEST:
            raise FunctionFileError(f"{where}: 'request' must be text of 1 to {MAX_REQUEST} characters")
        if "{" in request or "}" in request:
            raise FunctionFileError(f"{where}: 'request' must not contain braces")
        arguments = table.get("arguments", {})
        if not isinstance(arguments, dict):
            raise FunctionFileError(f"{where}: 'arguments' must be a table")
        errors = argument_errors(function, arguments)
        errors += [f"'{a.name}' is copied, but {arguments[a.name]!r} is not in the request" for a in function.arguments
                   if a.copied and isinstance(arguments.get(a.name), str) and arguments[a.name] not in request]
        if errors:
            raise FunctionFileError(f"{where} ({request!r}): {errors[0]}")
        out.append(Example(request.strip(), dict(arguments), language_of(request)))
    for language, name in (("en", "English"), ("zh", "Chinese")):
        count = sum(e.language == language for e in out)
        if count < MIN_EXAMPLES:
            raise FunctionFileError(f"'examples' has {count} {name} request(s); at least {MIN_EXAMPLES} are needed "
                                    "(one in four is held out for testing)")
    return tuple(out)


def _action(raw: Any, function: Function) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ACTION_KINDS:
        raise FunctionFileError(f"'action' must be a table with one of {', '.join(ACTION_KINDS)}")
    (kind, value), = raw.items()
    names = {a.name for a in function.arguments}
    if kind == "handler":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise FunctionFileError("'action.handler' must be a list of strings (argv: program, then arguments)")
        if not value[0].startswith("/"):
            raise FunctionFileError("'action.handler' must start with an absolute program path (no shell, no PATH "
                                    "lookup)")
        holes = {h for v in value for h in re.findall(r"\{(\w+)\}", v)}
    else:
        if not isinstance(value, str) or not re.match(r"https?://[^\s/]+", value):
            raise FunctionFileError(f"'action.{kind}' must be an http(s) URL")
        holes = set(re.findall(r"\{(\w+)\}", value))
        if kind == "webhook" and holes:
            raise FunctionFileError("'action.webhook' is a plain URL (the call's arguments go in the JSON body)")
    unknown = sorted(holes - names)
    if unknown:
        raise FunctionFileError(f"'action.{kind}' names {{{unknown[0]}}}, which is not an argument")
    return {kind: value}
