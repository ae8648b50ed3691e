"""What a bias toward "no function" trades, per language: irrelevant requests declined against requests that fit
a function and are still answered with the right one, over a sweep of biases, from one batched forward a row;
and whether a bias chosen on some wordings still pays on wordings it was not chosen on.

The first token is constrained to the functional tokens and the no-function token at inference, so the bias
only changes which of those wins; the function accuracy at a bias is exact for greedy decoding (the rest of
the call does not depend on the bias). Rows: every irrelevant row of the split plus a seeded sample of the
others. The split's templates (its wordings) are dealt into `--folds` groups; for each group a bias is chosen
on the other groups' rows (the one declining the most while fitting requests lose at most `--max-fit-drop`) and
judged on the group's rows: the cross-validated figures are what choosing by that rule buys on new wordings,
and a language gets a bias to ship only where it answers more requests right, mixed as the data mixes them.
Writes bench/results/reject_bias.json (and .md) and keeps the per-row scores (`--scores`) so a re-analysis
skips the forward. The bias is recorded with `octopus model pack --reject-bias LANG=X` (`make model` does it
with `--pack-flags`), changed with `octopus export/eval/ask --reject-bias` or the device config's
`model.reject_bias`.

    .venv/bin/python bench/reject_bias.py --model runs/default/agent --data runs/data --split test
    .venv/bin/python bench/reject_bias.py --pack-flags bench/results/reject_bias.json   # for `octopus model pack`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

from octopus.generation import first_choice

RESULTS = Path(__file__).parent / "results"
BIASES = tuple(round(0.25 * i, 2) for i in range(-4, 17))  # -1.0 .. +4.0
SHOWN = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # the table's rows; the choice uses the whole grid


def first_token_logprobs(agent, rows: list[dict], cache_dir: Path, batch_size: int = 32) -> list[list[float]]:
    """Per row, the log-probs over the allowed first tokens (functional tokens, then no-function last): logits
    at the first labelled position only."""
    import torch
    from tqdm import tqdm

    from octopus.training.datasets import IGNORE, Collator, FeatureCache

    collate = Collator(agent, "functional", 160, FeatureCache(cache_dir, agent, [r["image"] for r in rows]))
    allowed = torch.tensor(agent.tokens.first_token_ids)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(rows), batch_size), desc="first tokens", mininterval=2):
            batch = collate(rows[start:start + batch_size])
            labels = batch["labels"].clone()
            labelled = labels[:, 1:] != IGNORE
            first = labelled.int().argmax(1) + 1  # each row's first labelled token
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[torch.arange(len(labels)), first] = True
            labels[~keep] = IGNORE
            logits = agent(batch["input_ids"], vision_features=batch["vision_features"],
                           attention_mask=batch["attention_mask"], labels=labels, labelled_only=True).logits
            out += torch.log_softmax(logits[:, allowed].float(), -1).tolist()  # (B, K), rows in order
    return out


def scores_key(model: Path, split: str, rows: list[dict]) -> dict:
    """What a saved scores file must match to be reused: the agent, the split and the rows."""
    return {"model": str(model.resolve()), "split": split,
            "rows": hashlib.sha256("\n".join(r["image"] + "\t" + r["query"] for r in rows).encode()).hexdigest()}


def scored_rows(model: Path, split: str, rows: list[dict], cache_dir: Path,
                path: Path) -> tuple[list[list[float]], list[int]]:
    """Per row, the log-probs over the allowed first tokens and the gold one's index: read from `path` when it
    was written for this agent, split and rows, else computed and written there."""
    key = scores_key(model, split, rows)
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("key") == key:
        return saved["logprobs"], saved["gold"]
    from octopus.model.agent import OctopusAgent

    agent = OctopusAgent.load(model).eval()
    logprobs = first_token_logprobs(agent, rows, cache_dir)
    allowed = list(agent.tokens.first_token_ids)
    gold = [allowed.index(agent.encode_target(r["target"])[0]) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "logprobs": logprobs, "gold": gold}) + "\n")
    return logprobs, gold


def fold_of(template: str, folds: int) -> int:
    """A template's group, stable across runs and machines."""
    return int(hashlib.sha256(template.encode()).hexdigest(), 16) % folds


def picks(logprobs: list[list[float]], bias: float) -> list[int]:
    """Index of the winning first token per row (the no-function token is last), by the decoder's own rule."""
    return [first_choice(lp, bias) for lp in logprobs]


def rates(rows: list[dict], logprobs: list[list[float]], gold: list[int], bias: float) -> dict:
    hit: dict[str, list[bool]] = {"irrelevant": [], "fits": []}
    for row, pick, g in zip(rows, picks(logprobs, bias), gold):
        hit["irrelevant" if row["meta"].get("kind") == "irrelevant" else "fits"].append(pick == g)
    return {**{k: round(sum(v) / len(v), 4) if v else None for k, v in hit.items()},
            "rows": {k: len(v) for k, v in hit.items()}}


def choose(rows: list[dict], logprobs: list[list[float]], gold: list[int], max_fit_drop: float,
           biases=BIASES) -> float:
    """The bias that declines the most irrelevant rows while fitting rows lose at most `max_fit_drop` (a
    fraction) of right functions against no bias; no bias unless one declines more, ties to the smaller."""
    at_0 = rates(rows, logprobs, gold, 0.0)
    base = at_0["fits"] or 0.0
    best, best_declined = 0.0, at_0["irrelevant"] or 0.0
    for bias in sorted(b for b in biases if b > 0):
        r = rates(rows, logprobs, gold, bias)
        if r["fits"] is not None and r["fits"] < base - max_fit_drop - 1e-9:
            continue
        if (r["irrelevant"] or 0.0) > best_declined + 1e-9:
            best, best_declined = bias, r["irrelevant"] or 0.0
    return best


def cross_validate(rows: list[dict], logprobs: list[list[float]], gold: list[int], folds: int,
                   max_fit_drop: float) -> dict:
    """Per fold of templates: the bias chosen on the other folds and the outcome on this one; pooled over folds,
    the rates at no bias and at the chosen biases (every row judged by a bias chosen without its wording)."""
    groups = [fold_of(r["meta"]["template"], folds) for r in rows]
    chosen_picks: list[bool | None] = [None] * len(rows)
    per_fold = []
    for k in range(folds):
        inside = [i for i, g in enumerate(groups) if g != k]
        held = [i for i, g in enumerate(groups) if g == k]
        if not held:
            continue
        bias = choose([rows[i] for i in inside], [logprobs[i] for i in inside], [gold[i] for i in inside],
                      max_fit_drop)
        held_rows, held_lp, held_gold = [rows[i] for i in held], [logprobs[i] for i in held], [gold[i] for i in held]
        for i, pick in zip(held, picks(held_lp, bias)):
            chosen_picks[i] = pick == gold[i]
        per_fold.append({"fold": k, "bias": bias, "templates": len({rows[i]["meta"]["template"] for i in held}),
                         "at_0": rates(held_rows, held_lp, held_gold, 0.0),
                         "at_bias": rates(held_rows, held_lp, held_gold, bias)})
    pooled: dict[str, list[bool]] = {"irrelevant": [], "fits": []}
    for row, ok in zip(rows, chosen_picks):
        pooled["irrelevant" if row["meta"].get("kind") == "irrelevant" else "fits"].append(bool(ok))
    return {"folds": per_fold, "at_0": rates(rows, logprobs, gold, 0.0),
            "cross_validated": {k: round(sum(v) / len(v), 4) if v else None for k, v in pooled.items()}}


def analyse(rows, logprobs, gold, folds: int, max_fit_drop: float, irrelevant_share: float) -> dict:
    out = {}
    for language in sorted({r["language"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["language"] == language]
        lr, llp, lg = [rows[i] for i in idx], [logprobs[i] for i in idx], [gold[i] for i in idx]
        cv = cross_validate(lr, llp, lg, folds, max_fit_drop)
        chosen = choose(lr, llp, lg, max_fit_drop)
        out[language] = {"sweep": [{"bias": b, **rates(lr, llp, lg, b)} for b in BIASES], "chosen_on_all": chosen,
                         "cross_validation": cv,
                         "recommended": recommend(cv, chosen, irrelevant_share)}
    return out


def recommend(cv: dict, chosen: float, irrelevant_share: float) -> float:
    """The bias to ship: the one chosen on all rows where, on wordings it was not chosen on, it answered more
    requests right than without it, requests mixed as the data mixes them (`irrelevant_share` of them fit no
    function); otherwise none."""
    gain = (cv["cross_validated"]["irrelevant"] or 0.0) - (cv["at_0"]["irrelevant"] or 0.0)
    cost = (cv["at_0"]["fits"] or 0.0) - (cv["cross_validated"]["fits"] or 0.0)
    return chosen if irrelevant_share * gain > (1 - irrelevant_share) * cost else 0.0


def pack_flags(result: dict) -> list[str]:
    """`octopus model pack` arguments that record a result's recommended biases (none where none pays)."""
    return [f"--reject-bias={language}={r['recommended']:g}" for language, r in sorted(result["languages"].items())
            if r["recommended"]]


def main() -> None:
    if sys.argv[1:2] == ["--pack-flags"]:  # `make model`: the flags for `octopus model pack` from a result file
        print(" ".join(pack_flags(json.loads(Path(sys.argv[2]).read_text()))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a torch agent folder")
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--others", type=int, default=800, help="seeded sample of rows that are not irrelevant")
    parser.add_argument("--cache", default="runs/proxy", help="where the vision features of the rows are cached")
    parser.add_argument("--folds", type=int, default=5, help="groups of templates for the cross-validation")
    parser.add_argument("--max-fit-drop", type=float, default=0.01,
                        help="accuracy on fitting requests a chosen bias may cost (a fraction)")
    parser.add_argument("--irrelevant-share", type=float, default=0.1, help="share of requests that fit no "
                        "function, to weigh declines against lost calls (the data build's default)")
    parser.add_argument("--scores", default=None, help="per-row scores file (default: in --cache); reused "
                        "when it matches the model, split and rows")
    parser.add_argument("--out", default=str(RESULTS / "reject_bias.json"))
    args = parser.parse_args()
    from octopus.training.datasets import read_data_file

    rows = read_data_file(Path(args.data), f"{args.split}.jsonl")
    irrelevant = [r for r in rows if r["meta"].get("kind") == "irrelevant"]
    others = [r for r in rows if r["meta"].get("kind") != "irrelevant"]
    random.Random(0).shuffle(others)
    rows = irrelevant + others[:args.others]
    out = Path(args.out)
    scores = Path(args.scores) if args.scores else Path(args.cache) / "reject_bias_scores.json"
    logprobs, gold = scored_rows(Path(args.model), args.split, rows, Path(args.cache), scores)
    table = analyse(rows, logprobs, gold, args.folds, args.max_fit_drop, args.irrelevant_share)
    lines = [f"bias toward no function ({args.split} split: all {len(irrelevant)} irrelevant rows, "
             f"{min(args.others, len(others))} others; first token, exact for greedy)", "",
             "| language | bias | irrelevant declined | fitting requests: right function |",
             "| --- | --- | --- | --- |"]
    for language, result in table.items():
        lines += [f"| {language} | {s['bias']:+.1f} | {100 * s['irrelevant']:.1f}% | {100 * s['fits']:.1f}% |"
                  for s in result["sweep"] if s["bias"] in SHOWN]
    lines += ["", f"chosen by the rule (most declined, fitting requests -{100 * args.max_fit_drop:g} point at most), "
              f"cross-validated over {args.folds} groups of templates: each row judged by a bias chosen on the "
              "other groups' wordings", "",
              "| language | biases chosen (per group) | on all rows | declined: no bias → chosen | "
              "right function: no bias → chosen | to ship |", "| --- | --- | --- | --- | --- | --- |"]
    for language, result in table.items():
        cv = result["cross_validation"]
        chosen = ", ".join(f"{f['bias']:+.2f}" for f in cv["folds"])
        lines.append(f"| {language} | {chosen} | "
                     f"{result['chosen_on_all']:+.2f} | {100 * cv['at_0']['irrelevant']:.1f}% → "
                     f"{100 * cv['cross_validated']['irrelevant']:.1f}% | {100 * cv['at_0']['fits']:.1f}% → "
                     f"{100 * cv['cross_validated']['fits']:.1f}% | {result['recommended']:+.2f} |")
    lines += ["", "to ship: the bias chosen on all rows where, cross-validated, it answers more requests right than "
              f"no bias, with {100 * args.irrelevant_share:g}% of requests fitting no function; otherwise none"]
    print("\n".join(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "split": args.split, "folds": args.folds,
                               "max_fit_drop": args.max_fit_drop, "irrelevant_share": args.irrelevant_share,
                               "languages": table}, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
