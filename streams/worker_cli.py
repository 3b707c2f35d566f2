"""`straycode worker`: run one Faust stream-processing worker.

Several workers with the same kafka.app_id form one consumer group and share the input
partitions; each needs its own --web-port and --datadir when they share a host."""
from __future__ import annotations

import argparse
import logging

from straycode.logs import make_handlers_safe
from .connection import command_settings


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="override kafka.broker (kafka://host:port)")
    p.add_argument("--web-port", type=int, help="override kafka.web_port (/metrics, /healthz)")
    p.add_argument("--datadir", help="override kafka.datadir (table stores live here)")
    p.add_argument("--app-id", help="override kafka.app_id (consumer group, changelog prefix)")
    p.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])


def build(settings: dict, web_port: int | None = None, datadir: str | None = None):
    """(app, pipeline) ready to run; used by the CLI, tests and the benchmark."""
    from .agents import Pipeline
    from .app import create_app

    app = create_app(settings, web_port=web_port, datadir=datadir)
    return app, Pipeline(app, settings)


def warm_start(settings: dict, pipeline) -> None:
    """Seed the population frequencies from `straycode load-state` (streams/handover.py),
    once, before the worker starts; the tables recover the rest (users, network view,
    pending codes) the ordinary way. A warm start that cannot be read stops the worker."""
    from straycode.statedir import StateError

    from .handover import seed_population

    try:
        seed_population(settings, pipeline.population)
    except RuntimeError as exc:
        raise StateError(str(exc)) from None


def worker_class():
    import faust

    class QuietWorker(faust.Worker):
        """Faust's progress spinner sets the root logger to DEBUG and filters in its own
        handler, so every debug record of aiokafka and Faust is built and dropped (~7% of
        the worker's CPU, measured with py-spy). No spinner: the root keeps --loglevel."""

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            self.spinner = None
            make_handlers_safe(logger)      # Faust installed its own handlers: escape them too

    return QuietWorker


def run(args: argparse.Namespace) -> int:
    QuietWorker = worker_class()

    settings = command_settings(args)
    app, pipeline = build(settings, args.web_port, args.datadir)
    from straycode.runtime import tune_gc
    tune_gc()
    logging.getLogger("straycode").setLevel(args.loglevel.upper())
    warm_start(settings, pipeline)
    worker = QuietWorker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()     # returns on SIGTERM/SIGINT after a clean shutdown
    return 0
