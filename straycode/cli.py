"""`straycode` command line. Each subcommand lives in its own module exposing
``configure(parser)`` and ``run(args) -> int``; modules are imported only when used so
that `straycode replay` never pays for Faust.

:func:`main` is the one entry point: it installs the logging setup (straycode/logs.py),
validates the settings before any command runs, and turns every user mistake (bad
setting, missing or unreadable file, a GeoIP file that is not a MaxMind DB) into one line
``straycode: <what is wrong>`` on stderr and exit status 2, never a traceback."""
from __future__ import annotations

import argparse
import importlib
import sys

from maxminddb import InvalidDatabaseError

from straycode.detector.learned import ModelError
from straycode.logs import escape, setup_logging
from straycode.settings import ConfigError, load_settings
from straycode.statedir import StateError

USAGE_ERROR = 2
# user mistakes, reported in one line; anything else is a bug and keeps its traceback
USER_ERRORS = (ConfigError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError, InvalidDatabaseError, ModelError, StateError)

COMMANDS = {
    # name: (module, one-line help)
    "replay": ("straycode.replay", "score a JSONL event file through the embedded pipeline (no broker)"),
    "backfill": ("straycode.backfill", "build detector state from history files (no alerts written)"),
    "load-state": ("straycode.streams.load_state_cli",
                   "write a saved detector state into the Kafka changelogs so workers start warm"),
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


def user_error_message(exc: BaseException) -> str:
    """One line for a user mistake (control characters escaped: file names are input too)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, InvalidDatabaseError):
        text = f"GeoIP database: {exc}"
    else:
        text = str(exc)
    return escape(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = build_parser(argv).parse_args(argv)
    try:
        load_settings(args.config)     # every command: a bad setting stops it before any work
        return int(importlib.import_module(args._module).run(args) or 0)
    except USER_ERRORS as exc:
        print(f"straycode: {user_error_message(exc)}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
