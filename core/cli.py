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
