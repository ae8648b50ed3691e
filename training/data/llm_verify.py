"""Optional LLM verification of generated rows through an OpenAI-compatible chat endpoint.

The Octopus papers verify generated examples with an LLM judge; here the rule checks in `build.verify` always
run, and a user who configures an endpoint (`--llm-verify-url`, `--llm-verify-model`, key in
`OCTOPUS_LLM_API_KEY`) also gets a yes/no verdict per row. Rows judged "no" are rejected and re-drawn like
any other reject. Plain urllib: no client library, any server speaking `/chat/completions` works.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

SYSTEM = ("You check training examples for a phone assistant that answers a request about a camera photo with "
          "one function call. Reply with exactly 'yes' if the call is what the request asks for, given the "
          "objects in the photo, with correct arguments; otherwise reply 'no'.")


class VerifierError(RuntimeError):
    """The configured endpoint could not be used."""


@dataclass
class LLMVerifier:
    base_url: str  # e.g. http://localhost:8000/v1
    model: str
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_settings(cls, url: str | None, model: str | None) -> LLMVerifier | None:
        if not url:
            return None
        return cls(url.rstrip("/"), model or "default", os.environ.get("OCTOPUS_LLM_API_KEY"))

    def prompt(self, query: str, objects: list[str], call: str) -> str:
        return f"Request: {query}\nObjects in the photo: {', '.join(objects)}\nCall: {call}\nIs the call correct?"

    def judge(self, query: str, objects: list[str], call: str) -> bool:
        body = {"model": self.model, "temperature": 0, "max_tokens": 3,
                "messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": self.prompt(query, objects, call)}]}
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
            raise VerifierError(f"LLM verification at {self.base_url} failed: {exc}") from None
        return answer.strip().lower().startswith("yes")
