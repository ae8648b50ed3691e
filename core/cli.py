"""The `octopus` command line: one subcommand per job, each importing only what it needs.

Bad input ends with one line on stderr and exit status 2, never a traceback. Subcommands that need torch
import it lazily, so the device-only install can run `functions`, `ask` and `eval` on exported models.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def cmd_functions(args: argparse.Namespace) -> int:
    """The function table of a model (`--model`, else the device config's model when one is there), or of the
    function file `--file` as a model extended with it would have it; the ten otherwise."""
    from pathlib import Path

    from octopus.device.actions import model_registry
    from octopus.device.config import ConfigError
    from octopus.function_file import FunctionFileError, load_function_file

    try:
        if args.model:
            if not Path(args.model).is_dir():
                raise CliError(f"no model folder at {args.model}")
            registry = model_registry(args.model)
        else:
            registry = model_registry(_device_config(args.config).model.path)
        if args.file:
            registry = registry.extended(load_function_file(args.file, registry))
    except (ConfigError, FunctionFileError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(registry.to_json(), ensure_ascii=False, indent=2))
        return 0
    for f in registry:
        params = ", ".join(f"{a.name}{'' if a.required else '?'}: {a.type}" for a in f.arguments)
        print(f"{registry.token_for(f.name):<10} {f.name}({params})")
        print(f"{'':<10} {f.description_en}")
        print(f"{'':<10} {f.description_zh}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from octopus.preprocess import ImageError
    from octopus.prompt import QueryError
    from octopus.training.demo import run_demo

    try:
        return run_demo(args)
    except (ImageError, QueryError) as exc:  # the user's own --image or --query
        raise CliError(str(exc)) from None


def cmd_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.model.delta import DeltaError

    try:
        if args.model_command == "pack":
            from octopus.model.agent import OctopusAgent
            from octopus.model.config import AgentConfig
            from octopus.model.delta import base_agent, pack

            model = Path(args.model)
            reject_bias = _reject_bias(args)
            if not (model / "config.json").is_file():
                raise CliError(f"{model} is not a trained agent folder (no config.json)")
            config = AgentConfig.load(model / "config.json")
            if args.slot_flip and not config.projector.name_slots:
                raise CliError(f"{model} has no name slots to read back flip-averaged (projector.name_slots is "
                               "empty)")
            if args.slot_imagenet is not None and not 0 <= args.slot_imagenet <= 1:
                raise CliError(f"--slot-imagenet is a probability in [0, 1] (0: off), got {args.slot_imagenet}")
            if args.slot_imagenet:
                if not config.projector.name_slots:
                    raise CliError(f"{model} has no name slots for the ImageNet head to choose (projector.name_slots "
                                   "is empty)")
                from octopus.model.vision import IMAGENET_HEAD_TRUNK, has_imagenet_head

                if not has_imagenet_head(config.vision):
                    raise CliError(f"{model}'s vision ({config.vision.pretrained!r}) has no packaged ImageNet head: "
                                   f"--slot-imagenet needs vision.pretrained={IMAGENET_HEAD_TRUNK}")
            trained = OctopusAgent.load(model)
            trained.config.reject_bias.update(reject_bias)  # a decoding setting the delta records
            trained.config.projector.slot_flip |= args.slot_flip  # a read-back setting the delta records
            if args.slot_imagenet is not None:  # so is this one
                trained.config.projector.slot_imagenet = args.slot_imagenet
            base = base_agent(trained.config)
            meta = pack(trained, base, Path(args.out))
            kinds = {}
            for kind in meta["tensors"].values():
                kinds[kind.rstrip("0123456789")] = kinds.get(kind.rstrip("0123456789"), 0) + 1
            print(json.dumps({"out": args.out, "bytes": meta["bytes"], "sha256": meta["sha256"], "tensors": kinds}))
        else:
            from octopus.model.delta import assemble

            agent = assemble(Path(args.delta))
            agent.save(Path(args.out))
            print(json.dumps({"out": args.out}))
    except (DeltaError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.training.data.assets import AssetError
    from octopus.training.data.build import BuildConfig, build
    from octopus.training.data.llm_verify import VerifierError

    if args.n_per_function < 1:
        raise CliError("--n-per-function must be at least 1")
    if not 0 <= args.irrelevant_share < 1:
        raise CliError("--irrelevant-share must be in [0, 1)")
    if args.composed_wordings < 0:
        raise CliError("--composed-wordings must be 0 or more")
    config = BuildConfig(n_per_function=args.n_per_function, seed=args.seed, irrelevant_share=args.irrelevant_share,
                         with_description=args.with_description, workers=args.workers,
                         captions_per_concept=args.captions_per_concept, llm_verify_url=args.llm_verify_url,
                         llm_verify_model=args.llm_verify_model, extra_wordings=args.extra_wordings,
                         slot_values=args.slot_values, composed_wordings=args.composed_wordings)
    try:
        stats = build(Path(args.out), config)
    except (AssetError, VerifierError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({k: v["rows"] for k, v in stats.items() if isinstance(v, dict) and "rows" in v}))
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.training.data.build import dataset_stats
    from octopus.training.data.card import contact_sheet

    out = Path(args.dir)
    if not (out / "train.jsonl").is_file():
        raise CliError(f"{out} has no train.jsonl (build one with `octopus data build --out {out}`)")
    stats = dataset_stats(out)
    for split, s in stats.items():
        if isinstance(s, dict) and "rows" in s:
            print(f"{split}: {s['rows']} rows; languages {s['by_language']}")
            print(f"  functions {s['by_function']}")
            print(f"  kinds {s['by_kind']}")
    print(f"contact sheet: {contact_sheet(out)}")
    return 0


def cmd_train_extend(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.function_file import FunctionFileError
    from octopus.model.delta import DeltaError

    if not args.source or not args.functions:
        raise CliError("train extend needs --from MODEL (default: the shipped default) and --functions FILE")
    if args.source != "default" and not Path(args.source).is_dir():
        raise CliError(f"--from {args.source}: no such folder (or use --from default)")
    from octopus.training.extend import extend

    try:  # (extend checks the profile and the function file before it loads anything)
        record = extend(args.source, Path(args.functions), Path(args.out), args.profile, tuple(args.set),
                        args.max_steps)
    except (FunctionFileError, DeltaError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc).splitlines()[0]) from None
    print(json.dumps({"out": args.out, "functions": record["functions"], "test": record.get("test")},
                     ensure_ascii=False))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.stage == "extend":
        return cmd_train_extend(args)
    if not args.data:
        raise CliError(f"train {args.stage} needs --data DIR")
    from octopus.training.pipeline import train

    overrides = list(args.set)
    if args.judge_url:
        overrides += [f"stage3_rl.rl.judge_url={args.judge_url}", f"stage3_rl.rl.judge_model={args.judge_model or ''}",
                      "stage3_rl.rl.use_judge=true"]
    try:
        result = train(args.stage, args.profile, Path(args.data), Path(args.out), args.max_steps, tuple(overrides))
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(result)
    return 0


def _backend(model: str, precision: str = "auto"):
    from octopus.backends import ModelError, load_backend

    try:
        return load_backend(model, precision)
    except ModelError as exc:
        raise CliError(str(exc)) from None


def _reject_bias(args: argparse.Namespace) -> dict[str, float]:
    from octopus.generation import parse_reject_bias

    try:
        return parse_reject_bias(args.reject_bias)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _shows_progress(args: argparse.Namespace) -> bool:
    """A progress bar on stderr, also with --json (stdout holds the JSON) where a person watches: a whole test
    split takes ~15 minutes on 2 cores. Quiet where stderr is captured (CI logs, tests)."""
    return not args.json or sys.stderr.isatty()


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.evaluate import evaluate, format_metrics, read_eval_rows, sample_rows, swap_metrics, swap_rows

    data = Path(args.data)
    if not data.is_file():
        raise CliError(f"no data file at {data}")
    reject_bias = _reject_bias(args)
    if args.probe:
        return _probe(args, data)
    try:
        rows = read_eval_rows(data)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    rows = sample_rows(rows, args.limit)
    progress = _shows_progress(args)
    backend = _backend(args.model, args.precision)
    backend.reject_bias = {**backend.reject_bias, **reject_bias}
    from octopus.preprocess import ImageError

    try:
        result, predictions = evaluate(backend, rows, progress=progress)
        if args.swap:
            swapped = swap_rows(rows)
            if not swapped:
                raise CliError(f"{data} has no image-decided rows (meta.kind = ambiguous) to swap images between")
            result["image_swap"] = swap_metrics(evaluate(backend, swapped, progress=progress)[1])
    except ImageError as exc:
        raise CliError(str(exc)) from None
    if backend.reject_bias:
        result["reject_bias"] = backend.reject_bias
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for p in predictions:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(json.dumps(result, ensure_ascii=False) if args.json else format_metrics(result))
    return 0


def _probe(args: argparse.Namespace, data) -> int:
    import random

    from octopus.backends import load_backend

    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows or "concept" not in rows[0]:
        raise CliError(f"{data} has no `concept` rows: the naming probe reads clip_val.jsonl-style files")
    if args.limit and args.limit < len(rows):
        rows = [rows[i] for i in sorted(random.Random(0).sample(range(len(rows)), args.limit))]
    agent = load_backend(args.model)
    if not hasattr(agent, "image_embeds"):
        raise CliError("the naming probe needs a torch agent folder (the exported graphs only answer calls)")
    from octopus.training.probes import naming_probe

    result, answers = naming_probe(agent, rows, data.parent, progress=_shows_progress(args))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for a in answers:
                f.write(json.dumps(a, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    lines = [f"naming probe, {result['rows']} images: top-1 by language"]
    for metric, title in (("top1", "greedy: the LM's own continuation"),
                          ("ranked_top1", "ranked: the best-scored of every known name"),
                          ("ranked_over_blank_top1", "ranked, each name's score less its score over a grey image")):
        lines += [f" {title}"] + [f"  {group:<24} {d}" for group, d in result.get(metric, {}).items()]
    if "ranked_top1_blank" in result:
        lines.append(f"  {'grey image (floor)':<24} {result['ranked_top1_blank']}")
    print("\n".join(lines))
    return 0


def _device_config(path: str | None, required: bool = False):
    from octopus.device.config import ConfigError, load_config

    try:
        return load_config(path, required=required)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def cmd_ask(args: argparse.Namespace) -> int:
    """One request through the answer step the daemon uses (octopus.device.answer): the call is recorded in the
    config's outbox (a dry run unless --execute) and delivered before this returns."""
    from pathlib import Path

    from octopus.preprocess import ImageError, load_image
    from octopus.prompt import QueryError, check_query_text

    config = _device_config(args.config)  # config, image, query and outbox checked before the (slow) model load
    reject_bias = _reject_bias(args)
    try:
        image = load_image(Path(args.image))
    except ImageError as exc:
        raise CliError(str(exc)) from None
    try:
        check_query_text(args.query)
    except QueryError as exc:
        raise CliError(f"--query: {exc}") from None
    outbox = _open_outbox(config)

    from octopus.device.answer import AnswerStep
    from octopus.device.config import ConfigError

    try:
        step = AnswerStep.from_config(_backend(args.model, args.precision), outbox, config, execute=args.execute)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    step.agent.reject_bias = {**step.agent.reject_bias, **reject_bias}  # the command line over the config
    try:
        record = step(image, args.query, "cli:ask")
    except QueryError as exc:
        raise CliError(str(exc)) from None
    action = step.deliver(record["outbox_id"]) if "outbox_id" in record else None
    outbox.close()
    if args.json:
        print(json.dumps({"function": record["function"], "arguments": record["arguments"], "raw": record["raw"],
                          "action": action and {**action, "dry_run": record["dry_run"]},
                          "error": record.get("error"), "timings_ms": record["timings_ms"]}, ensure_ascii=False))
    else:
        print(record["raw"])
        if action:
            dry_done = record["dry_run"] and action["status"] == "done"
            print(action["detail"] if dry_done else f"{action['status']}: {action['detail']}")
        elif record.get("not_queued"):
            print(f"not queued: {record['error']}", file=sys.stderr)
    return 1 if record.get("not_queued") or (action and action["status"] == "failed") else 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from octopus.bundle import ManifestError
    from octopus.device.button import ButtonError
    from octopus.device.camera import CameraError
    from octopus.device.config import ConfigError
    from octopus.device.daemon import Daemon
    from octopus.device.outbox import OutboxError

    config = _device_config(args.config, required=True)
    logging.getLogger().setLevel(config.daemon.log_level.upper())
    try:
        return Daemon(config).run()
    except (ManifestError, CameraError, ButtonError, ConfigError, OutboxError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _open_outbox(config):
    """The outbox in the config's state directory, or the one-line reason it cannot be opened."""
    from octopus.device.outbox import Outbox, OutboxError

    try:
        outbox = Outbox.from_config(config)
    except OSError as exc:
        raise CliError(f"cannot open the outbox in {config.state_dir()} ({exc.strerror or exc})") from None
    except OutboxError as exc:
        raise CliError(str(exc)) from None
    if outbox.problem:
        print(f"warning: outbox: {outbox.problem}", file=sys.stderr)
    return outbox


def cmd_outbox(args: argparse.Namespace) -> int:
    import time

    from octopus.device.actions import Actions, model_registry
    from octopus.device.config import ConfigError

    config = _device_config(args.config)
    outbox = _open_outbox(config)
    if args.outbox_command == "list":
        items = outbox.list(args.status)
        if args.json:
            print(json.dumps([i.to_json() for i in items], ensure_ascii=False))
        for i in [] if args.json else items:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.created))
            print(f"{i.id}  {when}  {i.status:<7} {i.attempts}x  {i.function} "
                  f"{json.dumps(i.arguments, ensure_ascii=False)}{'  (dry run)' if i.dry_run else ''}"
                  f"{'  ' + i.result if i.result else ''}")
        return 0
    unknown = [i for i in args.ids if outbox.get(i) is None]
    if unknown:
        raise CliError(f"no outbox item {unknown[0]}")
    queued = outbox.retry(args.ids or None)
    try:
        actions = Actions(config.actions, model_registry(config.model.path))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    handled = outbox.deliver_due(actions.perform_item)
    counts = outbox.counts()
    print(f"requeued {queued}; delivered {sum(i.status == 'done' for i in handled)} of {len(handled)}; "
          f"outbox now {counts['pending']} pending, {counts['failed']} failed")
    return 0 if all(i.status == "done" for i in handled) else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from octopus.device.doctor import run_checks

    config = _device_config(args.config)
    checks = run_checks(config, smtp=not args.no_network)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL' if c.ok is False else 'skip'}  {c.name:<{width}}  {c.detail}")
    return 0 if all(c.ok is not False for c in checks) else 1


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.exporters.onnx_export import export

    model = Path(args.model)
    if not (model / "config.json").is_file():
        raise CliError(f"{model} is not a trained agent folder (no config.json)")
    reject_bias = _reject_bias(args)
    methods = {}
    for item in args.quant:
        graph, _, method = item.partition("=")
        methods[graph] = method
    try:
        manifest = export(model, Path(args.out), int8=args.int8 or bool(methods), methods=methods,
                          decoder=args.decoder, reject_bias=reject_bias, vocab=args.vocab,
                          shortlist=args.shortlist, shortlist_data=args.shortlist_data)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    greedy = manifest["greedy_parity_fp32"]
    print(json.dumps({**{name: g["parity_max_abs"] for name, g in manifest["graphs"].items()},
                      "greedy_calls_same": f"{greedy['same']}/{greedy['prompts']}",
                      **({"decoder_fallback": manifest["decoder_fallback"]} if "decoder_fallback" in manifest else {})},
                     ensure_ascii=False))
    return 0


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model options `eval` and `ask` share: a torch agent folder or an exported one."""
    p.add_argument("--model", required=True, help="an agent folder or an exported ONNX folder")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"], help="exported graph set")
    p.add_argument("--reject-bias", action="append", default=[], metavar="LANG=X",
                   help="bias toward 'no function' for requests in LANG (en, zh), replacing the model's own "
                   "(and the device config's); repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="octopus", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is being done")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("functions", help="list the functions the agent can call")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.add_argument("--model", default=None, help="a model folder (exported or torch): its own function table")
    p.add_argument("--config", default=None, help="device config (default /etc/octopus/config.toml if present): "
                   "its model's function table")
    p.add_argument("--file", default=None, help="a function file: check it and show the table with it appended")
    p.set_defaults(handler=cmd_functions)

    p = sub.add_parser("demo", help="the shipped default model answers bundled requests (or yours), torch-free")
    p.add_argument("--query", default=None, help="your request (default: the bundled examples)")
    p.add_argument("--image", default=None, help="your image (default: the bundled examples)")
    p.add_argument("--untrained", action="store_true", help="answer at once with a tiny untrained agent")
    p.set_defaults(handler=cmd_demo)

    model = sub.add_parser("model", help="a trained agent as its small delta over the packaged weights")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    p = model_sub.add_parser("pack", help="write a trained agent's delta over the packaged base weights")
    p.add_argument("--model", required=True, help="a trained agent folder")
    p.add_argument("--out", required=True, help="output folder (delta.safetensors + delta.json)")
    p.add_argument("--reject-bias", action="append", default=[], metavar="LANG=X",
                   help="record a bias toward 'no function' for requests in LANG (en, zh) in the delta's config, "
                   "replacing the agent's own (bench/reject_bias.py recommends one); repeatable")
    p.add_argument("--slot-flip", action="store_true",
                   help="record that the name slots read the object back from the image and its mirror image "
                   "together (projector.slot_flip: one more vision pass at inference, no training)")
    p.add_argument("--slot-imagenet", type=float, default=None, metavar="P",
                   help="record that the name slots read a photo through the vision trunk's packaged ImageNet head "
                   "where it puts at least P of its probability on one name's classes (projector.slot_imagenet; "
                   "0 turns it off; no training)")
    p.set_defaults(handler=cmd_model)
    p = model_sub.add_parser("assemble", help="rebuild an agent folder from the packaged weights plus a delta")
    p.add_argument("--delta", required=True, help="a folder written by `octopus model pack`")
    p.add_argument("--out", required=True, help="agent folder to write")
    p.set_defaults(handler=cmd_model)

    data = sub.add_parser("data", help="build and inspect the training data").add_subparsers(dest="data_command",
                                                                                           required=True)
    p = data.add_parser("build", help="render scenes and write train/test/test_unseen_style JSONL and captions")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-per-function", type=int, default=1000, help="train rows per function per language")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--irrelevant-share", type=float, default=0.1, help="share of rows whose answer is no function")
    p.add_argument("--with-description", action="store_true", help="append 'Function description: ...' to targets")
    p.add_argument("--captions-per-concept", type=int, default=16,
                   help="caption and naming scenes per concept per training style")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--extra-wordings", choices=["off", "text", "all"], default="off",
                   help="train on the second wording bank too: its text-decided wordings or all of them (its held-out "
                   "fourth is test_new_wordings either way)")
    p.add_argument("--composed-wordings", type=int, default=0, metavar="N",
                   help="train on up to N more wordings per function and language, composed from the pieces of its "
                   "training wordings (held-out splits are the same either way)")
    p.add_argument("--slot-values", choices=["base", "more"], default="more",
                   help="'more': training rows also draw on about 30 more values a slot that only ever train; "
                   "'base': the slot values the test splits hold a fourth of (held-out splits are the same either way)")
    p.add_argument("--llm-verify-url", help="OpenAI-compatible endpoint (…/v1) for an LLM verdict on every row; "
                   "key from OCTOPUS_LLM_API_KEY")
    p.add_argument("--llm-verify-model", help="model name to ask at that endpoint")
    p.set_defaults(handler=cmd_data_build)
    p = data.add_parser("stats", help="print counts and write a contact sheet PNG")
    p.add_argument("dir", help="a folder written by `octopus data build`")
    p.set_defaults(handler=cmd_data_stats)

    p = sub.add_parser("train", help="train a profile's stages (resumes after a kill)")
    p.add_argument("stage", choices=["all", "stage0", "stage1", "stage2", "stage3", "reward", "extend"],
                   help="one stage, `reward` (stage 3's reward model alone), all of them, or `extend` (teach a "
                        "trained model the functions of a function file)")
    p.add_argument("--profile", default="quick", help="a profile of training/stages.py (PROFILES): tiny for CI, "
                   "quick for 2 cores (default), full for GPUs")
    p.add_argument("--data", help="data folder (built there first if it has no train.jsonl); not for extend")
    p.add_argument("--from", dest="source", help="extend: the model to extend: default (the shipped default), a "
                   "delta folder or an agent folder")
    p.add_argument("--functions", help="extend: a function file (TOML or JSON) declaring the new functions")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-steps", type=int, default=None, help="stop each stage after this many steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the agent config (--set vision.model=ViT-B-32 --set vision.pretrained=openai) or a "
                        "stage's hyper-parameters (--set stage2_functional.lr=1e-3, --set "
                        "'stage3_rl.rl.rewards={\"function\": 1, \"arguments\": 1}'); extend: "
                        "--set extend.n_per_function=300 --set extend.stage.lr=5e-4")
    p.add_argument("--judge-url", default=None,
                   help="stage 3: also score calls with an LLM judge at this OpenAI-compatible endpoint (…/v1); "
                        "key in OCTOPUS_LLM_API_KEY")
    p.add_argument("--judge-model", default=None, help="model name to ask at the judge endpoint")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="accuracy, argument match and latency on a JSONL file")
    _add_model_arguments(p)
    p.add_argument("--data", required=True, help="a JSONL file of rows (image, query, function[, arguments])")
    p.add_argument("--out", help="write one prediction per row as JSONL")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--limit", type=int, default=None, help="evaluate a seeded sample of N rows")
    p.add_argument("--probe", choices=["naming"], default=None,
                   help="naming: image tokens alone -> the object's name (EN, ZH) on clip_val.jsonl-style rows")
    p.add_argument("--swap", action="store_true",
                   help="also the image-swap check: image-decided queries over another category's image")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("export", help="export an agent to ONNX graphs (fp32, optionally int8) with a manifest")
    p.add_argument("--model", required=True, help="a trained agent folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--int8", action="store_true", help="also write int8 graphs")
    p.add_argument("--quant", action="append", default=[], metavar="GRAPH=METHOD",
                   help="quantization per graph: dynamic, nbits8 or nbits4 (e.g. decoder_model_merged=nbits4)")
    p.add_argument("--decoder", default="auto", choices=["auto", "genai", "torch"],
                   help="decoder exporter: onnxruntime-genai's builder (fused attention), torch.onnx, or auto "
                        "(genai where it supports the LM)")
    p.add_argument("--reject-bias", action="append", default=[], metavar="LANG=X",
                   help="record a bias toward 'no function' for requests in LANG (en, zh) in the manifest, "
                   "replacing the agent's own; repeatable")
    p.add_argument("--vocab", default=None, metavar="SCRIPTS",
                   help="trim the vocabulary to the tokens of these scripts, e.g. en,zh: exact for text in them, "
                        "other characters spelled in bytes (SentencePiece-style tokenizers such as Gemma's)")
    p.add_argument("--shortlist", type=int, default=None, metavar="N",
                   help="an output layer of the N most frequent pieces, every single character, the pieces of "
                        "--shortlist-data's targets and the enumerated values; the runtime adds the request's "
                        "own tokens (SentencePiece-style tokenizers)")
    p.add_argument("--shortlist-data", action="append", default=[], metavar="JSONL",
                   help="rows whose targets' pieces the shortlist keeps (the training data); repeatable")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("ask", help="answer one request about one image (the action is a dry run unless --execute)")
    _add_model_arguments(p)
    p.add_argument("--image", required=True, help="an image file")
    p.add_argument("--query", required=True, help="the request, in English or Chinese")
    p.add_argument("--json", action="store_true", help="print function, arguments, raw output, action and timings")
    p.add_argument("--execute", action="store_true", help="perform the action through the outbox")
    p.add_argument("--config", default=None, help="device config (default /etc/octopus/config.toml if present)")
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser("daemon", help="run the device: camera button, query endpoint, actions (systemd service)")
    p.add_argument("--config", default="/etc/octopus/config.toml", help="device config file")
    p.set_defaults(handler=cmd_daemon)

    outbox = sub.add_parser("outbox", help="list or retry queued actions").add_subparsers(dest="outbox_command",
                                                                                        required=True)
    p = outbox.add_parser("list", help="every outbox item, oldest first")
    p.add_argument("--status", choices=["pending", "sending", "done", "failed"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", default=None, help="device config (default /etc/octopus/config.toml if present)")
    p.set_defaults(handler=cmd_outbox)
    p = outbox.add_parser("retry", help="queue failed items (or the given ids) again and deliver what is due now")
    p.add_argument("ids", nargs="*", help="outbox ids (default: every failed item)")
    p.add_argument("--config", default=None, help="device config (default /etc/octopus/config.toml if present)")
    p.set_defaults(handler=cmd_outbox)

    p = sub.add_parser("doctor", help="check config, model files, camera, GPIO, outbox and SMTP")
    p.add_argument("--config", default=None, help="device config (default /etc/octopus/config.toml if present)")
    p.add_argument("--no-network", action="store_true", help="skip the SMTP reachability check")
    p.set_defaults(handler=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"octopus {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"octopus {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`octopus eval --json | head`): quiet, as shell tools are
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot raise again
        return 141  # 128 + SIGPIPE, as a shell reports a reader that closed


if __name__ == "__main__":
    sys.exit(main())
