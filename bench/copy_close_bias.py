"""Does a bias toward closing a copied value pay? The shipped default's Chinese copies run long ("修车的邮件" for
"修车"): greedy decoding keeps copying where the value should end. This adds `bias` to the logits of the tokens
that close a quoted value (those whose bytes begin with '"') while a copied argument (`Argument.copied`) is open
and non-empty, for requests in one language, and decodes rows with copied arguments int8 as deployed: exact
copied values and exact calls per bias, on a split to choose on and a split to judge on.

    .venv/bin/python bench/copy_close_bias.py --onnx runs/default/onnx --data runs/data --language zh

Prints a markdown table and writes bench/results/copy_close_bias_<language>.{md,json}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tables import markdown_table, save_table

from octopus.device.runtime import OnnxAgent
from octopus.evaluate import read_eval_rows, sample_rows
from octopus.function_file import language_of

BIASES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def closing_tokens(agent: OnnxAgent) -> np.ndarray:
    """The tokens whose bytes begin with '"': those that close a quoted value."""
    return np.array([t for t in range(agent.tokenizer.get_vocab_size()) if agent.constraint.piece(t).startswith(b'"')])


def biased_choose(constraint, choose, closing: np.ndarray, language: str, bias: float):
    """`choose` (the constraint's own) with `bias` added to `closing` while a copied value is open and non-empty,
    in `language`'s requests."""

    def choose_biased(generated, logits, request=""):
        if bias and language_of(request) == language:
            state = constraint.state(generated)
            if state is not None and state[1] and state[0] in constraint.copied.get(int(generated[0]), {}):
                logits = np.array(logits, np.float32, copy=True)
                logits[closing] += bias
        return choose(generated, logits, request)
    return choose_biased


def score(agent: OnnxAgent, rows: list[dict], copied: dict[str, set[str]]) -> dict:
    values = calls = 0
    value_hits = call_hits = 0
    for row in rows:
        generation = agent.generate(row["image_path"], row["query"])
        same_function = generation.function == row["function"]
        calls += 1
        call_hits += same_function and generation.arguments == row["arguments"]
        for name in copied.get(row["function"], ()):
            if name in row["arguments"]:
                values += 1
                value_hits += same_function and generation.arguments.get(name) == row["arguments"][name]
    return {"rows": calls, "copied_values": values, "copied_exact": round(value_hits / max(1, values), 4),
            "call_exact": round(call_hits / max(1, calls), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("runs/data"))
    parser.add_argument("--language", default="zh", choices=("en", "zh"))
    parser.add_argument("--choose-on", default="test_new_wordings")
    parser.add_argument("--judge-on", default="test")
    parser.add_argument("--rows", type=int, default=400, help="a seeded sample of each split's rows")
    args = parser.parse_args()
    agent = OnnxAgent(args.onnx, precision="int8")
    copied = {f.name: {a.name for a in f.arguments if a.copied} for f in agent.registry}
    unbiased, closing = agent.constraint.choose, closing_tokens(agent)
    report, table = {"onnx": str(args.onnx), "language": args.language, "splits": {}}, []
    for split in (args.choose_on, args.judge_on):
        rows = [r for r in read_eval_rows(args.data / f"{split}.jsonl")
                if r["language"] == args.language and r.get("meta", {}).get("kind") == "text"
                and any(n in r["arguments"] for n in copied.get(r["function"], ()))]
        rows = sample_rows(rows, args.rows)
        report["splits"][split] = {}
        for bias in BIASES:
            agent.constraint.choose = biased_choose(agent.constraint, unbiased, closing, args.language, bias)
            result = score(agent, rows, copied)
            report["splits"][split][str(bias)] = result
            print(split, bias, result, flush=True)
    for bias in BIASES:
        table.append([f"{bias:g}", *(f"{100 * report['splits'][s][str(bias)]['copied_exact']:.1f} / "
                                     f"{100 * report['splits'][s][str(bias)]['call_exact']:.1f}"
                                     for s in (args.choose_on, args.judge_on))])
    header = ["close bias", *(f"{s}: copied values / calls exact ({report['splits'][s]['0.0']['rows']} rows)"
                              for s in (args.choose_on, args.judge_on))]
    save_table(f"copy_close_bias_{args.language}", markdown_table(header, table), report)


if __name__ == "__main__":
    main()
