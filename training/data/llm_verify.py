"""Optional LLM verification of generated rows through an OpenAI-compatible chat endpoint.

The Octopus papers verify generated examples with an LLM judge; here the rule checks in `build.verify` always
run, and a user who configures an endpoint (`--llm-verify-url`, `--llm-verify-model`, key in
`OCTOPUS_LLM_API_KEY`) also gets a yes/no verdict per row. Rows judged "no" are rejected and re-drawn like
any other reject, through `octopus.training.chat` (any server speaking `/chat/completions`).
"""

from __future__ import annotations

from dataclasses import dataclass

from octopus.training.chat import ChatError, chat

SYSTEM = ("You check training examples for a phone assistant that answers a request about a camera photo with "
          "one function call. Reply with exactly 'yes' if the call is what the request asks for, given the "
          "objects in the photo, with correct arguments; otherwise reply 'no'.")


class VerifierError(RuntimeError):
    """The configured endpoint could not be used."""


@dataclass
class LLMVerifier:
    base_url: str  # e.g. http://localhost:8000/v1
    model: str
    timeout: float = 60.0

    @classmethod
    def from_settings(cls, url: str | None, model: str | None) -> LLMVerifier | None:
        if not url:
            return None
        return cls(url.rstrip("/"), model or "default")

    def prompt(self, query: str, objects: list[str], call: str) -> str:
        return f"Request: {query}\nObjects in the photo: {', '.join(objects)}\nCall: {call}\nIs the call correct?"

    def judge(self, query: str, objects: list[str], call: str) -> bool:
        try:
            answer = chat(self.base_url, self.model, SYSTEM, self.prompt(query, objects, call), 3, self.timeout)
        except ChatError as exc:
            raise VerifierError(f"LLM verification at {self.base_url} failed: {exc}") from None
        return answer.strip().lower().startswith("yes")
