"""The function registry and the `octopus functions` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from octopus.functions import FUNCTIONS, function_for_token, function_tokens, get_function, registry_json, token_for

EXPECTED = [
    "send_email", "send_text_message", "google_search", "amazon_shopping", "smart_recycling",
    "lost_and_found", "interior_design", "instacart_shopping", "doordash_delivery", "pet_care",
]


def test_the_ten_functions_in_stable_order():
    assert [f.name for f in FUNCTIONS] == EXPECTED
    assert function_tokens() == [f"<nexa_{k}>" for k in range(10)]
    for k, name in enumerate(EXPECTED):
        assert token_for(name) == f"<nexa_{k}>"
        assert function_for_token(f"<nexa_{k}>").name == name
    assert function_for_token("<nexa_10>") is None


def test_every_function_is_bilingual_with_required_arguments():
    for f in FUNCTIONS:
        assert f.description_en.isascii() and not f.description_zh.isascii()
        assert any(a.required for a in f.arguments), f.name
        for a in f.arguments:
            assert a.type in ("string", "integer")
            assert a.description_en and a.description_zh


def test_unknown_function_names_the_known_ones():
    try:
        get_function("set_alarm")
    except KeyError as exc:
        assert "send_email" in str(exc)
    else:
        raise AssertionError("expected KeyError")


def _octopus_script() -> str:
    beside = Path(sys.executable).parent / "octopus"
    return str(beside) if beside.exists() else shutil.which("octopus")


def test_cli_functions_json_lists_the_ten():
    out = subprocess.run([_octopus_script(), "functions", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert [d["name"] for d in data] == EXPECTED
    assert data == registry_json()
    assert set(data[0]) == {"name", "token", "description_en", "description_zh", "arguments"}
    assert {a["name"] for a in data[0]["arguments"]} == {"recipient", "subject", "body"}


def test_cli_functions_plain_and_bad_usage():
    out = subprocess.run([_octopus_script(), "functions"], capture_output=True, text=True, check=True)
    assert "pet_care(pet: string, service?: string)" in out.stdout
    bad = subprocess.run([_octopus_script(), "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_cli_output_into_a_closed_pipe_exits_quietly():
    """`octopus functions --json | head -c 10`: the reader goes away before the output is written."""
    read, write = os.pipe()
    os.close(read)  # no reader: the first write fails with EPIPE
    try:
        done = subprocess.run([_octopus_script(), "functions", "--json"], stdout=write, stderr=subprocess.PIPE,
                              text=True)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""
