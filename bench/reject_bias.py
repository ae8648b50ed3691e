"""What a bias toward "no function" trades, per language: irrelevant requests declined against requests that fit
a function and are still answered with the right one, over a sweep of biases, from one batched forward a row.

The first token is constrained to the functional tokens and the no-function token at inference, so the bias
only changes which of those wins; the function accuracy at a bias is exact for greedy decoding (the rest of
the call does not depend on the bias). Rows: every irrelevant row of the split plus a seeded sample of the
others. Writes bench/results/reject_bias.json (and .md). The bias is set with `octopus export/eval/ask
--reject-bias LANG=X` or the device config's `model.reject_bias`.

    .venv/bin/python bench/reject_bias.py --model runs/default/agent --data runs/data --split test
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from octopus.training.datasets import IGNORE, Collator, FeatureCache, read_data_file

RESULTS = Path(__file__).parent / "results"
BIASES = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


@torch.no_grad()
def first_token_logprobs(agent, rows: list[dict], cache_dir: Path, batch_size: int = 32) -> list[list[float]]:
    """Per row, the log-probs over the allowed first tokens (functional tokens, then no-function last)."""
    from tqdm import tqdm

    collate = Collator(agent, "functional", 160, FeatureCache(cache_dir, agent, [r["image"] for r in rows]))
    allowed = torch.tensor(agent.tokens.first_token_ids)
    out = []
    for start in tqdm(range(0, len(rows), batch_size), desc="first tokens", mininterval=2):
        batch = collate(rows[start:start + batch_size])
        logits = agent(batch["input_ids"], vision_features=batch["vision_features"],
                       attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        for j in range(logits.shape[0]):
            pos = int((targets[j] != IGNORE).nonzero()[0])
            out.append(torch.log_softmax(logits[j, pos, allowed], -1).tolist())
    return out


def sweep(rows: list[dict], logprobs: list[list[float]], allowed: list[int], gold: list[int],
          biases=BIASES) -> dict:
    table = {}
    for language in sorted({r["language"] for r in rows}):
        lines = []
        for bias in biases:
            hit = {"irrelevant": [], "fits": []}
            for row, lp, g in zip(rows, logprobs, gold):
                if row["language"] != language:
                    continue
                scores = [*lp[:-1], lp[-1] + bias]
                pick = allowed[max(range(len(scores)), key=scores.__getitem__)]
                hit["irrelevant" if row["meta"].get("kind") == "irrelevant" else "fits"].append(pick == g)
            lines.append({"bias": bias, **{k: round(sum(v) / max(1, len(v)), 4) for k, v in hit.items()},
                          "rows": {k: len(v) for k, v in hit.items()}})
        table[language] = lines
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a torch agent folder")
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--others", type=int, default=800, help="seeded sample of rows that are not irrelevant")
    parser.add_argument("--cache", default="runs/proxy", help="where the vision features of the rows are cached")
    parser.add_argument("--out", default=str(RESULTS / "reject_bias.json"))
    args = parser.parse_args()
    from octopus.model.agent import OctopusAgent

    agent = OctopusAgent.load(args.model).eval()
    rows = read_data_file(Path(args.data), f"{args.split}.jsonl")
    irrelevant = [r for r in rows if r["meta"].get("kind") == "irrelevant"]
    others = [r for r in rows if r["meta"].get("kind") != "irrelevant"]
    random.Random(0).shuffle(others)
    rows = irrelevant + others[:args.others]
    logprobs = first_token_logprobs(agent, rows, Path(args.cache))
    allowed = list(agent.tokens.first_token_ids)
    gold = [agent.encode_target(r["target"])[0] for r in rows]
    table = sweep(rows, logprobs, allowed, gold)
    lines = [f"bias toward no function ({args.split} split: all {len(irrelevant)} irrelevant rows, "
             f"{min(args.others, len(others))} others; first token, exact for greedy)", "",
             "| language | bias | irrelevant declined | fitting requests: right function |",
             "| --- | --- | --- | --- |"]
    for language, sweep_rows in table.items():
        lines += [f"| {language} | {s['bias']:+.1f} | {100 * s['irrelevant']:.1f}% | {100 * s['fits']:.1f}% |"
                  for s in sweep_rows]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "split": args.split, "sweep": table}, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
