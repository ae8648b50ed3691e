"""Does choosing a copied value as a whole span pay? Greedy decoding writes a copied argument a token at a time:
its first token picks where the copy starts, and each later step whether it goes on. The Chinese misses are
copies that start early or end late ("告诉王阿姨面包没了" for "面包没了"). This scores every span the constraint
allows (`octopus.generation._Spans`) by the model's own probability of writing it and then closing the quote,
and writes the best one: one decoder pass per candidate start (the pass over the request's rest from that
start gives every end's score), against greedy, int8 as deployed, on text-decided rows with copied arguments.

    .venv/bin/python bench/span_choice.py --onnx runs/default/onnx --data runs/data

Variants: `greedy` (as shipped), `span` (every start), `span_top3` (the 3 starts greedy's first token ranks
highest), `ends` (greedy's start, the best end). Prints a markdown table and writes
bench/results/span_choice.{md,json}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tables import markdown_table, save_table

import octopus.device.runtime as runtime
from octopus.device.runtime import OnnxAgent
from octopus.evaluate import read_eval_rows, sample_rows
from octopus.generation import _Spans

MAX_SPAN_TOKENS = 40
VARIANTS = ("greedy", "span", "span_top3", "ends")


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


class Recorder(runtime.DecoderState):
    """The decoder state of the request being answered, for the span scorer to feed and rewind."""
    current: Recorder | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Recorder.current = self


def spanning_choose(agent: OnnxAgent, variant: str, closing: np.ndarray, log: list):
    constraint, plain = agent.constraint, agent.constraint.choose
    plan: list[int] = []
    close_next = [False]

    def choose(generated, logits, request=""):
        if plan:
            token = plan.pop(0)
            close_next[0] = not plan
            return token
        if close_next[0]:
            close_next[0] = False
            scores = np.asarray(logits, np.float64)
            return int(closing[np.argmax(scores[closing])])
        function = int(generated[0])
        copied = constraint.copied.get(function, {})
        state = constraint.state(generated)
        if variant == "greedy" or state is None or state[1] or state[0] not in copied:
            return plain(generated, logits, request)
        spans = _Spans.of(request)
        if spans is None:
            return plain(generated, logits, request)
        name, pattern = state[0], copied[state[0]]
        first = log_softmax(logits)
        source = spans.source
        starts = sorted(spans.starts)
        first_ids = {s: agent.encode(source[s:].decode())[:MAX_SPAN_TOKENS] for s in starts}
        ranked = sorted(starts, key=lambda s: -first[first_ids[s][0]] if first_ids[s] else np.inf)
        if variant == "span_top3":
            starts = ranked[:3]
        elif variant == "ends":
            starts = ranked[:1]
        decoder = Recorder.current
        best: tuple[float, list[int]] | None = None
        scored: dict[str, float] = {}  # every span's score, for the misses' report
        for s in starts:
            ids = first_ids[s]
            if not ids:
                continue
            past, length = decoder.past, decoder.length
            rows = decoder.feed(ids)
            decoder.past, decoder.length = past, length
            decoder.passes -= 1
            total = first[ids[0]]
            for j in range(len(ids)):
                if j:
                    total += log_softmax(rows[j - 1])[ids[j]]
                text = agent.tokenizer.decode(ids[:j + 1], skip_special_tokens=True)
                if "\ufffd" in text or not spans.closes(text.encode(), pattern):
                    continue
                step = log_softmax(rows[j])
                score = total + np.logaddexp.reduce(step[closing])
                scored[text] = max(scored.get(text, -np.inf), float(score))
                if best is None or score > best[0]:
                    best = (score, ids[:j + 1])
        if best is None:
            return plain(generated, logits, request)
        log.append({"argument": name, "value": agent.tokenizer.decode(best[1], skip_special_tokens=True),
                    "scores": scored})
        plan.extend(best[1])
        token = plan.pop(0)
        close_next[0] = not plan
        return token
    return choose


def score(agent: OnnxAgent, rows: list[dict], copied: dict[str, set[str]], log: list) -> dict:
    """Exact copied values and calls; with a span-choosing arm, each written span that is not the row's value,
    with both spans' scores (log probability of the span and its close)."""
    values = value_hits = call_hits = 0
    start = time.perf_counter()
    per_row, misses = [], []
    for row in rows:
        log.clear()
        generation = agent.generate(row["image_path"], row["query"])
        for entry in log:
            gold = row["arguments"].get(entry["argument"])
            if isinstance(gold, str) and entry["value"] != gold:
                misses.append({"query": row["query"], "argument": entry["argument"], "value": gold,
                               "value_score": round(entry["scores"].get(gold, float("-inf")), 2),
                               "written": entry["value"], "written_score": round(entry["scores"][entry["value"]], 2)})
        same = generation.function == row["function"]
        call_hits += same and generation.arguments == row["arguments"]
        hits = []
        for name in sorted(copied.get(row["function"], ())):
            if name in row["arguments"]:
                values += 1
                hit = same and generation.arguments.get(name) == row["arguments"][name]
                value_hits += hit
                hits.append(bool(hit))
        per_row.append({"query": row["query"], "raw": generation.raw, "copied_hits": hits})
    return {"rows": len(rows), "copied_values": values, "copied_exact": round(value_hits / max(1, values), 4),
            "call_exact": round(call_hits / max(1, len(rows)), 4),
            "seconds_per_row": round((time.perf_counter() - start) / max(1, len(rows)), 3), "per_row": per_row,
            **({"spans_not_the_value": misses} if misses else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("runs/data"))
    parser.add_argument("--splits", nargs="+", default=["test_new_wordings", "test"])
    parser.add_argument("--languages", nargs="+", default=["zh", "en"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rows", type=int, default=300, help="a seeded sample of each split's rows per language")
    parser.add_argument("--name", default="span_choice")
    args = parser.parse_args()
    runtime.DecoderState = Recorder
    agent = OnnxAgent(args.onnx, precision="int8")
    agent.drafter = None  # one token a pass: the span scorer feeds and rewinds the cache itself
    copied = {f.name: {a.name for a in f.arguments if a.copied} for f in agent.registry}
    closing = np.array([t for t in range(agent.tokenizer.get_vocab_size())
                        if agent.constraint.piece(t).startswith(b'"')])
    report: dict = {"onnx": str(args.onnx), "splits": {}}
    table = []
    for split in args.splits:
        for language in args.languages:
            rows = [r for r in read_eval_rows(args.data / f"{split}.jsonl")
                    if r["language"] == language and r.get("meta", {}).get("kind") == "text"
                    and any(n in r["arguments"] for n in copied.get(r["function"], ()))]
            rows = sample_rows(rows, args.rows)
            first_rows: list[dict] = []  # the first arm's texts (greedy's, by default): the others keep only theirs
            for variant in args.variants:
                log: list = []
                agent.constraint.choose = spanning_choose(agent, variant, closing, log)
                result = score(agent, rows, copied, log)
                arms = report["splits"].setdefault(f"{split}/{language}", {})
                if first_rows:  # the rows whose text differs, not every row's text
                    result[f"rows_unlike_{args.variants[0]}"] = [r for r, g in zip(result["per_row"], first_rows)
                                                                 if r["raw"] != g["raw"]]
                else:
                    first_rows = result["per_row"]
                del result["per_row"]
                arms[variant] = result
                brief = {k: v for k, v in result.items() if not k.startswith(("rows_unlike", "spans_not"))}
                print(split, language, variant, brief, flush=True)
                table.append([split, language, variant, str(result["rows"]), str(result["copied_values"]),
                              f"{100 * result['copied_exact']:.1f}", f"{100 * result['call_exact']:.1f}",
                              f"{result['seconds_per_row']:.2f}"])
    header = ["split", "language", "variant", "rows", "copied values", "copied exact %", "calls exact %",
              "s a row (x86, int8)"]
    save_table(args.name, markdown_table(header, table), report)


if __name__ == "__main__":
    main()
