"""`straycode` command line. Each subcommand lives in its own module exposing
``configure(parser)`` and ``run(args) -> int``; modules are imported only when used so
that `straycode replay` never pays for Faust."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    # name: (module, one-line help)
    "replay": ("straycode.replay", "score a JSONL event file through the embedded pipeline (no broker)"),
    "simulate": ("straycode.models.simulate_cli", "generate labelled contract-v1 traffic"),
    "evaluate": ("straycode.models.evaluate_cli", "score quality of --scores against --labels"),
    "train": ("straycode.models.train_cli", "learn per-reason weights from labelled scores (config override)"),
    "demo": ("straycode.demo", "simulate, replay, evaluate and show example alerts"),
    "worker": ("straycode.streams.worker_cli", "run the Faust stream processor on Kafka"),
    "produce": ("straycode.streams.produce_cli", "publish a JSONL event file to the input topics"),
    "tail-alerts": ("straycode.streams.tail_cli", "follow the alert topic"),
    "dispatch": ("straycode.hooks.dispatch_cli", "deliver alert actions to signed webhooks"),
    "hook-receiver": ("straycode.hooks.receiver", "example endpoint that verifies webhook signatures"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="straycode", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML file overriding config/defaults.yaml")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=argparse.SUPPRESS,
                       help="YAML file overriding config/defaults.yaml")
        if name == wanted:
            importlib.import_module(module).configure(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
