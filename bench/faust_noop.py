"""The honest ceiling for `straycode worker`: a Faust agent that only counts.

Same broker, input topic, consumer settings and batching (up to `kafka.batch_max_events`
or `kafka.batch_within_s`) as the worker's user agent; Faust's own commit rule. With
`kafka.eager_delivery: false` and `kafka.direct_batches: false` it is stock Faust (its
delivery, `stream.take_events`): the benchmark's reference; with both true it reads
through straycode's eager delivery and direct batches (streams/faust_compat.py), as the
worker does. The fetch wait is set as in the worker (Tansu answers a fetch only when it
expires). No tables, no outputs. Serves the two pages the benchmark polls: /healthz
(owned partitions) and /metrics (straycode_events_in_total).

    python -m bench.faust_noop --web-port P --datadir D     (settings from STRAYCODE__*)
"""
from __future__ import annotations

import argparse
import logging

import faust

from straycode.settings import load_settings
from straycode.streams.app import create_app
from straycode.streams.faust_compat import Batching, take_batches
from straycode.streams.topics import input_topic_names


def build(settings: dict, web_port: int, datadir: str) -> faust.App:
    kcfg = settings["kafka"]
    app = create_app(settings, web_port=web_port, datadir=datadir, exact_commit=False)
    names = input_topic_names(kcfg)
    topic = app.topic(*names, partitions=int(kcfg["partitions"]),
                      key_serializer="raw", value_serializer="raw")
    counted = [0]
    batching = Batching.from_settings(kcfg)

    @app.agent(topic, name="noop", concurrency=1)
    async def count(stream):
        async for events in take_batches(stream, batching):
            counted[0] += len(events)

    @app.page("/metrics")
    async def metrics(web, request):
        return web.text(f'straycode_events_in_total{{topic="all"}} {counted[0]}\n')

    @app.page("/healthz")
    async def healthz(web, request):
        try:
            owned = sorted({tp.partition for tp in app.consumer.assignment()
                            if tp.topic in names})
        except Exception:
            owned = []
        return web.json({"ok": bool(owned), "partitions": owned},
                        status=200 if owned else 503)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--web-port", type=int, required=True)
    ap.add_argument("--datadir", required=True)
    ap.add_argument("--loglevel", default="warning")
    args = ap.parse_args()
    from straycode.streams.worker_cli import worker_class
    app = build(load_settings(), args.web_port, args.datadir)
    logging.getLogger("straycode").setLevel(args.loglevel.upper())
    worker_class()(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
