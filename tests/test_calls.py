"""The call grammar: formatting, parsing and validation, including property tests."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from octopus.calls import Call, CallError, format_call, parse_and_validate, parse_call, validate_call
from octopus.functions import FUNCTIONS, Function

SETTINGS = settings(max_examples=200, deadline=None)


def _value_strategy(arg):
    if arg.type == "integer":
        return st.integers(min_value=arg.minimum or 0, max_value=10**6)
    if arg.enum:
        return st.sampled_from(arg.enum)
    if arg.pattern and "@" in arg.pattern:
        word = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
        return st.builds(lambda u, d: f"{u}@{d}.com", word, word.filter(lambda s: s[0] not in "._-"))
    return st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and s.strip())


@st.composite
def valid_calls(draw):
    spec: Function = draw(st.sampled_from(FUNCTIONS))
    args = {}
    for arg in spec.arguments:
        if arg.required or draw(st.booleans()):
            args[arg.name] = draw(_value_strategy(arg))
    return spec.name, args


@SETTINGS
@given(valid_calls())
def test_round_trip_of_every_function(call):
    name, args = call
    text = format_call(name, args)
    assert text.startswith("<nexa_") and text.endswith("<nexa_end>")
    assert parse_and_validate(text) == Call(name, args)
    assert parse_and_validate(text + "\n\nFunction description: anything") == Call(name, args)


def test_no_function_round_trip():
    assert format_call(None) == "<nexa_none><nexa_end>"
    assert parse_and_validate("<nexa_none><nexa_end>") == Call(None, {})


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text):
    result = parse_and_validate(text)
    assert isinstance(result, (Call, CallError))


@SETTINGS
@given(st.sampled_from(range(10)), st.text(max_size=120))
def test_garbage_after_a_functional_token_never_raises(k, tail):
    result = parse_and_validate(f"<nexa_{k}>" + tail)
    assert isinstance(result, (Call, CallError))


def test_structured_errors():
    assert parse_call("hello").kind == "syntax"
    assert parse_call("<nexa_42>()<nexa_end>").kind == "unknown_function"
    missing = parse_and_validate('<nexa_0>(subject="hi")<nexa_end>')
    assert missing.kind == "invalid_arguments" and "recipient" in missing.message
    assert missing.function == "send_email"
    bad_email = parse_and_validate('<nexa_0>(recipient="not-an-email", subject="x")<nexa_end>')
    assert bad_email.kind == "invalid_arguments"
    bad_enum = parse_and_validate('<nexa_9>(pet="cat", service="haircut")<nexa_end>')
    assert "service" in bad_enum.message
    bad_type = parse_and_validate('<nexa_3>(product="milk", quantity="two")<nexa_end>')
    assert "integer" in bad_type.message
    unterminated = parse_and_validate('<nexa_2>(query="unterminated)<nexa_end>')
    assert unterminated.kind == "syntax"
    assert parse_and_validate('<nexa_2>(query="x", query="y")<nexa_end>').kind == "syntax"
    assert parse_and_validate('<nexa_2>(query="x")').kind == "syntax"
    assert validate_call(Call("set_alarm", {})).kind == "unknown_function"
    assert parse_call(None).kind == "syntax"


def test_escapes_and_spacing():
    text = format_call("send_text_message", {"recipient": "Ann", "message": 'say "hi"\\ now\nok'})
    assert parse_and_validate(text).arguments["message"] == 'say "hi"\\ now\nok'
    spaced = '<nexa_3>( product = "牛奶" ,quantity= 2 ) <nexa_end>'
    assert parse_and_validate(spaced) == Call("amazon_shopping", {"product": "牛奶", "quantity": 2})


def test_an_integer_of_thousands_of_digits_is_a_call_error_not_a_crash():
    result = parse_call('<nexa_3>(item="x", quantity=' + "9" * 5000 + ")<nexa_end>")
    assert isinstance(result, CallError) and "too long" in result.message
    assert parse_call('<nexa_3>(item="x", quantity=123456789012345678)<nexa_end>').arguments["quantity"] > 0


def test_string_values_lose_surrounding_whitespace():
    """Seen on the quick model: "food delivery: 5 veggie burger" -> dish=" veggie burger"."""
    assert parse_and_validate('<nexa_8>(dish=" veggie burger", quantity=5)<nexa_end>') == \
        Call("doordash_delivery", {"dish": "veggie burger", "quantity": 5})
    assert parse_and_validate('<nexa_4>(item="jam jar ", material="glass")<nexa_end>') == \
        Call("smart_recycling", {"item": "jam jar", "material": "glass"})
    assert parse_and_validate('<nexa_4>(item="  ")<nexa_end>').kind == "invalid_arguments"
