"""One client for OpenAI-compatible `/chat/completions` endpoints (llama.cpp server, vLLM, a hosted API): the
data verifier and the stage-3 LLM judge both speak through it. Plain urllib, no client library; the key comes
from OCTOPUS_LLM_API_KEY."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

API_KEY_VARIABLE = "OCTOPUS_LLM_API_KEY"


class ChatError(RuntimeError):
    """The endpoint could not be reached or gave no answer in the expected shape."""


def chat(base_url: str, model: str, system: str, user: str, max_tokens: int, timeout: float) -> str:
    """The assistant's text for one system + user exchange at temperature 0."""
    body = {"model": model, "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    headers = {"Content-Type": "application/json"}
    if os.environ.get(API_KEY_VARIABLE):
        headers["Authorization"] = f"Bearer {os.environ[API_KEY_VARIABLE]}"
    request = urllib.request.Request(f"{base_url.rstrip('/')}/chat/completions", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["choices"][0]["message"]["content"]
    except (urllib.error.URLError, OSError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ChatError(str(exc) or type(exc).__name__) from None
