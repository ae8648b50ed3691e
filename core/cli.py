"""The `octopus` command line: one subcommand per job, each importing only what it needs.

Bad input ends with one line on stderr and exit status 2, never a traceback. Subcommands that need torch
import it lazily, so the device-only install can run `functions`, `ask` and `eval` on exported models.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def cmd_functions(args: argparse.Namespace) -> int:
    from octopus.functions import FUNCTIONS, registry_json, token_for

    if args.json:
        print(json.dumps(registry_json(), ensure_ascii=False, indent=2))
        return 0
    for f in FUNCTIONS:
        params = ", ".join(f"{a.name}{'' if a.required else '?'}: {a.type}" for a in f.arguments)
        print(f"{token_for(f.name):<10} {f.name}({params})")
        print(f"{'':<10} {f.description_en}")
        print(f"{'':<10} {f.description_zh}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from octopus.training.demo import run_demo

    return run_demo(args)


def cmd_data_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.training.data.assets import AssetError
    from octopus.training.data.build import BuildConfig, build

    if args.n_per_function < 1:
        raise CliError("--n-per-function must be at least 1")
    if not 0 <= args.irrelevant_share < 1:
        raise CliError("--irrelevant-share must be in [0, 1)")
    config = BuildConfig(n_per_function=args.n_per_function, seed=args.seed, irrelevant_share=args.irrelevant_share,
                         with_description=args.with_description, workers=args.workers,
                         captions_per_concept=args.captions_per_concept)
    try:
        stats = build(Path(args.out), config)
    except AssetError as exc:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="octopus", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is being done")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("functions", help="list the functions the agent can call")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(handler=cmd_functions)

    p = sub.add_parser("demo", help="answer a request about a sample image with the built-in default model")
    p.add_argument("--query", default="order this for me", help="the request")
    p.add_argument("--image", default=None, help="an image path (default: a rendered sample scene)")
    p.set_defaults(handler=cmd_demo)

    data = sub.add_parser("data", help="build and inspect the training data").add_subparsers(dest="data_command",
                                                                                           required=True)
    p = data.add_parser("build", help="render scenes and write train/test/test_unseen_style JSONL and captions")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-per-function", type=int, default=1000, help="train rows per function per language")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--irrelevant-share", type=float, default=0.1, help="share of rows whose answer is no function")
    p.add_argument("--with-description", action="store_true", help="append 'Function description: ...' to targets")
    p.add_argument("--captions-per-concept", type=int, default=4, help="caption scenes per concept per style")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.set_defaults(handler=cmd_data_build)
    p = data.add_parser("stats", help="print counts and write a contact sheet PNG")
    p.add_argument("dir", help="a folder written by `octopus data build`")
    p.set_defaults(handler=cmd_data_stats)
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


if __name__ == "__main__":
    sys.exit(main())
