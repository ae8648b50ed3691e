"""The token table: functional tokens, the no-function and end tokens and the image placeholder.

`add_agent_tokens` adds them to a tokenizer as special tokens, resizes the LM's input and output embeddings
and initialises each new row. With `init="semantic"` (the Octopus paper's enrichment) a function token's row
is the mean embedding of its function's name and description tokens, so training starts from a meaningful
point. A user function's token (`octopus train extend`) is added after the image placeholder, so a model
extended later and one built with the same registry from the start have the same ids. This module knows the
registry and the embedding matrices; it knows nothing about images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from octopus.functions import (
    BUILTIN,
    END_TOKEN,
    FUNCTIONS,
    IMAGE_TOKEN,
    NO_FUNCTION_DESCRIPTION_EN,
    NO_FUNCTION_DESCRIPTION_ZH,
    NO_FUNCTION_TOKEN,
    Registry,
)

INIT_METHODS = ("semantic", "mean", "random")


@dataclass(frozen=True)
class TokenTable:
    """Ids of the agent's special tokens in one tokenizer."""

    function_ids: tuple[int, ...]  # index k is <nexa_k> (the ten, then any user functions)
    no_function_id: int
    end_id: int
    image_id: int

    @property
    def first_token_ids(self) -> list[int]:
        """The tokens allowed as the first generated token: a function or the no-function answer."""
        return [*self.function_ids, self.no_function_id]

    @classmethod
    def from_tokenizer(cls, tokenizer, registry: Registry = BUILTIN) -> TokenTable:
        tokens = agent_tokens(registry)
        ids = tokenizer.convert_tokens_to_ids(tokens)
        unk = tokenizer.unk_token_id
        missing = [t for t, i in zip(tokens, ids) if i is None or (unk is not None and i == unk)]
        if missing:
            raise ValueError(f"tokenizer lacks the agent tokens {missing}; call add_agent_tokens first")
        n = len(FUNCTIONS)
        return cls(tuple(ids[:n]) + tuple(ids[n + 3:]), ids[n], ids[n + 1], ids[n + 2])


def agent_tokens(registry: Registry = BUILTIN) -> list[str]:
    """The ten's tokens, the no-function, end and image tokens, then the user functions' tokens."""
    tokens = registry.tokens()
    return [*tokens[:len(FUNCTIONS)], NO_FUNCTION_TOKEN, END_TOKEN, IMAGE_TOKEN, *tokens[len(FUNCTIONS):]]


def token_descriptions(bilingual: bool = True, registry: Registry = BUILTIN) -> dict[str, str]:
    """The text whose tokens seed each new token's embedding row."""
    out = {}
    for token, f in zip(registry.tokens(), registry.functions):
        text = f"{f.name.replace('_', ' ')}: {f.description_en}"
        out[token] = text + (" " + f.description_zh if bilingual else "")
    out[NO_FUNCTION_TOKEN] = NO_FUNCTION_DESCRIPTION_EN + (" " + NO_FUNCTION_DESCRIPTION_ZH if bilingual else "")
    out[END_TOKEN] = "end of the function call"
    out[IMAGE_TOKEN] = "image photo picture"
    return out


def add_agent_tokens(lm, tokenizer, init: str = "semantic", bilingual: bool = True,
                     registry: Registry = BUILTIN) -> TokenTable:
    """Add the agent tokens (the registry's), resize the embeddings and initialise the new rows. Idempotent: on
    an agent that has the ten already, only a user function's token is added (`octopus train extend`)."""
    if init not in INIT_METHODS:
        raise ValueError(f"unknown token init {init!r}; choose one of {', '.join(INIT_METHODS)}")
    new = [t for t in agent_tokens(registry) if t not in tokenizer.get_vocab()]
    if not new:
        return TokenTable.from_tokenizer(tokenizer, registry)
    descriptions = token_descriptions(bilingual, registry)
    seed_ids = {t: tokenizer(descriptions[t], add_special_tokens=False)["input_ids"] for t in new}
    old_in = lm.get_input_embeddings().weight.detach().clone()  # (V, D)
    old_out = lm.get_output_embeddings().weight.detach().clone() if lm.get_output_embeddings() is not None else None
    tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    table = TokenTable.from_tokenizer(tokenizer, registry)
    with torch.no_grad():
        for matrix, old in ((lm.get_input_embeddings().weight, old_in), (_untied_output(lm), old_out)):
            if matrix is None or old is None:
                continue
            for token in new:
                matrix[tokenizer.convert_tokens_to_ids(token)] = _init_row(old, seed_ids[token], init)
    return table


def _untied_output(lm):
    out = lm.get_output_embeddings()
    if out is None or out.weight is lm.get_input_embeddings().weight:
        return None  # tied: the input rows are the output rows
    return out.weight


def _init_row(old: torch.Tensor, seed_ids: list[int], init: str) -> torch.Tensor:
    if init == "semantic" and seed_ids:
        return old[seed_ids].mean(0)
    if init == "random":
        return torch.randn(old.shape[1], dtype=old.dtype) * old.std()
    return old.mean(0)
