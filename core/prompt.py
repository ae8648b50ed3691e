"""The prompt: the Octopus v2 instruction with the image placeholder tokens before the query.

    Below is the query from the users, please call the correct function and generate the parameters to
    call the function.\n\nQuery: <image>×N{query} \n\nResponse:

`PROMPT_PREFIX` never changes, so a runtime can compute its KV cache once at load. The image placeholder
is expanded to N copies here, at tokenization time, and the model splices image embeddings into those
positions by mask: sequence length never changes inside the model. Torch-free; no tokenizer knowledge.
"""

from __future__ import annotations

from octopus.functions import IMAGE_TOKEN

PROMPT_PREFIX = (
    "Below is the query from the users, please call the correct function and generate the parameters "
    "to call the function.\n\nQuery: "
)
PROMPT_SUFFIX = " \n\nResponse:"
# a request is a sentence or two (training rows are under 60 tokens); a pasted page would overflow the
# decoder's positions or stall a Pi for minutes, so both back-ends refuse it in one line
MAX_QUERY_TOKENS = 256


class QueryError(ValueError):
    """A request the agent cannot take (empty or too long): one line that says why."""


def check_query_text(query: str) -> None:
    """Raise QueryError for text that is not Unicode text (a lone surrogate, e.g. a Latin-1 byte from a shell
    whose locale is not UTF-8) or that is empty."""
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError("the request is not valid UTF-8 text (is the terminal's locale UTF-8?)") from None
    if not query.strip():
        raise QueryError("the request is empty")


def query_limit(max_positions: int | None, prefix_tokens: int, image_tokens: int, max_new_tokens: int) -> int:
    """The most query tokens a request may have: MAX_QUERY_TOKENS, or fewer when the decoder's positions
    (prefix + image + query + answer) would not hold it."""
    if not max_positions:
        return MAX_QUERY_TOKENS
    return max(0, min(MAX_QUERY_TOKENS, max_positions - prefix_tokens - image_tokens - max_new_tokens))


def check_query_ids(ids: list[int], limit: int = MAX_QUERY_TOKENS) -> None:
    """Raise QueryError when the tokenized query (suffix included) is over `limit` tokens."""
    if len(ids) > limit:
        raise QueryError(f"the request is {len(ids)} tokens long; the limit is {limit}")


def split_prompt(query: str, num_image_tokens: int, prefix: str = PROMPT_PREFIX,
                 suffix: str = PROMPT_SUFFIX) -> tuple[str, str, str]:
    """(fixed prefix, image placeholders, query part): a runtime tokenizes the three separately. An exported
    model passes the prefix and suffix its manifest recorded; training and the torch agent use the defaults."""
    return prefix, IMAGE_TOKEN * num_image_tokens, query.strip() + suffix
