"""Stage 3's reward functions, each with TRL's reward-function signature.

    reward(prompts: list[str], completions: list[str], **columns) -> list[float | None]

`completions` are decoded with special tokens kept (`<nexa_3>(item="...")<nexa_end>`); `columns` carry the
prompt rows' fields, one value per completion: `function`, `arguments`, `language`, `query`, `meta`. `None`
means "no opinion" (TRL drops it from the weighted sum). Rewards are in [0, 1].

- verifiable (rules): `format` (parses and validates against the function's schema), `function`,
  `arguments` (per-argument match), `end` (`<nexa_end>` closes it, nothing after), `language` (free-text
  arguments in the query's language);
- `environment`: the call is run through the device's action layer in dry-run mode (the code the Pi runs),
  which accepts it or refuses it (recipient not allowed, subject not one line, message too long, ...);
- `reward_model`: a learned scalar (octopus.training.reward_model) squashed by a sigmoid;
- `judge`: an optional LLM through an OpenAI-compatible endpoint, 0-1;
- `random`: the control: uniform noise, seeded.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

from octopus.calls import Call, format_call, parse_and_validate
from octopus.device.actions import ActionFailed, Actions
from octopus.device.config import ActionsSection, load_config
from octopus.functions import END_TOKEN, FUNCTIONS, NO_FUNCTION_TOKEN, function_for_token, get_function
from octopus.training.chat import ChatError, chat
from octopus.training.data.concepts import CONCEPTS

log = logging.getLogger(__name__)
CJK = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")

RewardFn = Callable[..., list]


def _column(columns: dict, name: str, n: int) -> list:
    values = columns.get(name)
    return list(values) if values is not None else [None] * n


def _parsed(completion: str):
    result = parse_and_validate(completion)
    return result if isinstance(result, Call) else None


def format_reward(prompts, completions, **columns) -> list[float]:
    return [1.0 if _parsed(c) is not None else 0.0 for c in completions]


def function_reward(prompts, completions, **columns) -> list[float]:
    gold = _column(columns, "function", len(completions))
    out = []
    for completion, function in zip(completions, gold):
        call = _parsed(completion)
        out.append(1.0 if call is not None and call.function == function else 0.0)
    return out


def arguments_reward(prompts, completions, **columns) -> list[float]:
    """Share of argument names (gold and predicted) whose values match; 0 for the wrong function. A no-function
    gold call scores 1 only for the no-function answer."""
    functions = _column(columns, "function", len(completions))
    arguments = _column(columns, "arguments", len(completions))
    out = []
    for completion, function, gold in zip(completions, functions, arguments):
        call = _parsed(completion)
        if call is None or call.function != function:
            out.append(0.0)
            continue
        gold = gold or {}
        names = set(gold) | set(call.arguments)
        out.append(1.0 if not names else sum(gold.get(n) == call.arguments.get(n) for n in names) / len(names))
    return out


def end_reward(prompts, completions, **columns) -> list[float]:
    """`<nexa_end>` closes the call and nothing follows it."""
    return [1.0 if c.count(END_TOKEN) == 1 and c.rstrip().endswith(END_TOKEN) else 0.0 for c in completions]


def _free_text(function: str, arguments: dict) -> list[str]:
    """String arguments that are words (not enums, addresses or numbers)."""
    try:
        spec = get_function(function)
    except KeyError:
        return []
    out = []
    for arg in spec.arguments:
        value = arguments.get(arg.name)
        if isinstance(value, str) and arg.enum is None and arg.pattern is None and arg.name != "recipient":
            out.append(value)
    return out


def language_reward(prompts, completions, **columns) -> list[float | None]:
    """1 when every free-text argument is in the query's language (Chinese: has CJK; English: no CJK), 0 when
    one is not; None when the call has no free-text argument (nothing to judge)."""
    languages = _column(columns, "language", len(completions))
    out = []
    for completion, language in zip(completions, languages):
        call = _parsed(completion)
        texts = _free_text(call.function, call.arguments) if call is not None and call.function else []
        if not texts or language not in ("en", "zh"):
            out.append(None)
            continue
        if language == "zh":
            ok = all(CJK.search(t) and not LATIN_WORD.search(t) for t in texts)
        else:
            ok = all(not CJK.search(t) for t in texts)
        out.append(1.0 if ok else 0.0)
    return out


class EnvironmentReward:
    """The functional token acting on the device's environment: the call goes through `Actions.check` and a
    dry-run `perform`, as the Pi runs it; 1 accepted, 0 refused or not a valid call. A no-function answer does
    nothing and is accepted."""

    __name__ = "environment_reward"

    def __init__(self, config_path: str | Path | None = None):
        section = load_config(Path(config_path)).actions if config_path else ActionsSection()
        self.actions = Actions(section)

    def __call__(self, prompts, completions, **columns) -> list[float]:
        out = []
        for completion in completions:
            result = parse_and_validate(completion)
            if not isinstance(result, Call):
                out.append(0.0)
                continue
            if result.function is None:
                out.append(1.0)
                continue
            try:
                self.actions.perform(result.function, result.arguments, key="rl", dry_run=True)
                out.append(1.0)
            except ActionFailed:
                out.append(0.0)
        return out


class RandomReward:
    """The ablation's control: a seeded uniform reward that knows nothing."""

    __name__ = "random_reward"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def __call__(self, prompts, completions, **columns) -> list[float]:
        return [self.rng.random() for _ in completions]


def call_as_text(completion: str) -> str:
    """A call written with the function's *name* (the reward model's and judge's tokenizers have no
    `<nexa_k>`): `doordash_delivery(dish="pizza")`, `none`, or the raw text when it does not parse."""
    call = _parsed(completion)
    if call is None:
        def name(match: re.Match) -> str:
            spec = function_for_token(match.group(0))
            return "none" if match.group(0) == NO_FUNCTION_TOKEN else spec.name if spec else "unknown_function"

        text = re.sub(r"<nexa_(?:\d+|none)>", name, completion.replace(END_TOKEN, ""))
        return "invalid: " + text.strip()[:200]
    if call.function is None:
        return "none"
    text = format_call(call.function, call.arguments)
    return call.function + text[text.index("("):].replace(END_TOKEN, "")


def bilingual_name(concept) -> str:
    return f"{concept.en} ({concept.zh})"


def describe_request(query: str, objects: list[str] | None, name=bilingual_name) -> str:
    """The request and the objects in the scene as text, each by its English and Chinese name ("fried chicken
    (炸鸡)"): a call's argument names the object in the request's language, so the reward model and the judge
    can tell whether it names something in the photo by matching words in either language. `name`: a concept's
    text (bench/reward_prompt.py compares English names only)."""
    names = {c.key: name(c) for c in CONCEPTS}
    seen = ", ".join(names.get(o, o) for o in (objects or [])) or "unknown"
    return f"Request: {query}\nObjects in the photo: {seen}\nCall: "


JUDGE_PROMPT_FILE = Path(__file__).with_name("judge_prompt.txt")


class JudgeReward:
    """An LLM judge through an OpenAI-compatible `/chat/completions` endpoint (llama.cpp, vLLM, ...): the prompt
    is `judge_prompt.txt`, the answer a number 0-1. Retries with back-off; after the last failure the reward is
    None for that completion (no opinion), and the run goes on. Key from OCTOPUS_LLM_API_KEY."""

    __name__ = "judge_reward"

    def __init__(self, url: str, model: str | None = None, timeout: float = 30.0, retries: int = 2):
        self.url = url.rstrip("/")
        self.model = model or "default"
        self.timeout, self.retries = timeout, retries

        listing = "\n".join(f"- {f.name}({', '.join(a.name for a in f.arguments)}): {f.description_en}"
                            for f in FUNCTIONS)
        self.system = JUDGE_PROMPT_FILE.read_text(encoding="utf-8").replace("{functions}", listing)
        self.failures = 0

    def score(self, request: str, call: str) -> float | None:
        for attempt in range(self.retries + 1):
            try:
                answer = chat(self.url, self.model, self.system, request + call, 8, self.timeout)
                match = re.search(r"[01](?:\.\d+)?", answer)
                if match is None:
                    raise ChatError(f"no score in {answer!r}")
                return min(1.0, max(0.0, float(match.group(0))))
            except ChatError as exc:
                if attempt == self.retries:
                    self.failures += 1
                    log.warning("judge at %s failed (%s); no judge score for this call", self.url, exc)
                    return None
                time.sleep(0.5 * 2 ** attempt)
        return None

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        queries = _column(columns, "query", len(completions))
        metas = _column(columns, "meta", len(completions))
        return [self.score(describe_request(q, (m or {}).get("objects")), call_as_text(c))
                for q, m, c in zip(queries, metas, completions)]


REWARDS = ("format", "function", "arguments", "end", "language", "environment", "reward_model", "judge", "random")
RULES: dict[str, RewardFn] = {"format": format_reward, "function": function_reward, "arguments": arguments_reward,
                              "end": end_reward, "language": language_reward}


def build_rewards(weights: dict[str, float], *, environment_config=None, reward_model=None, judge_url=None,
                  judge_model=None, seed: int = 0) -> dict[str, tuple[RewardFn, float]]:
    """name -> (reward function, weight) for the weights' non-zero entries."""
    out: dict[str, tuple[RewardFn, float]] = {}
    for name, weight in weights.items():
        if not weight:
            continue
        if name in RULES:
            fn = RULES[name]
        elif name == "environment":
            fn = EnvironmentReward(environment_config)
        elif name == "reward_model":
            if reward_model is None:
                raise ValueError("the reward_model reward needs a trained reward model")
            fn = reward_model
        elif name == "judge":
            fn = JudgeReward(judge_url, judge_model)
        elif name == "random":
            fn = RandomReward(seed)
        else:
            raise ValueError(f"unknown reward {name!r}; choose from {', '.join(REWARDS)}")
        out[name] = (fn, float(weight))
    return out
