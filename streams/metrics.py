"""Prometheus metrics and a health page, served by the Faust web server (one port per
worker, so each worker is scraped on its own --web-port).

Each app gets its own CollectorRegistry so that several workers built in one process
(tests, benchmark) do not collide on metric names."""
from __future__ import annotations

import time

import faust
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events_in = Counter("straycode_events_in", "input messages read", ["topic"],
                                 registry=r)
        self.scored = Counter("straycode_codes_scored", "code requests decided", registry=r)
        self.alerts = Counter("straycode_alerts", "alerts published", ["kind", "severity"],
                              registry=r)
        self.dead_letters = Counter("straycode_dead_letters", "messages dead-lettered",
                                    ["reason"], registry=r)
        self.lag = Gauge("straycode_consumer_lag", "messages not yet read",
                         ["topic", "partition"], registry=r)
        self.watermark = Gauge("straycode_watermark_seconds",
                               "event-time clock of an input partition", ["partition"], registry=r)
        self.reorder_size = Gauge("straycode_reorder_buffered",
                                  "events read but not yet passed by the watermark", registry=r)
        self.reorder_forced = Counter("straycode_reorder_forced",
                                      "events released ahead of the watermark (buffer full)",
                                      registry=r)
        self.publish_errors = Counter(
            "straycode_publish_errors", "outputs the broker did not take (each attempt)",
            ["output"], registry=r)
        self.partition_stops = Counter(
            "straycode_partition_stops",
            "input partitions stopped because an output could not be sent", registry=r)
        self.stopped = Gauge("straycode_partitions_stopped",
                             "input partitions stopped now (see /healthz)", registry=r)
        self.batch_size = Histogram(
            "straycode_batch_messages", "input messages per batch",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000), registry=r)
        self.ack_wait = Histogram(
            "straycode_ack_wait_seconds", "wait for the broker to hold a batch's outputs",
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=r)
        self.latency = Histogram(
            "straycode_scoring_latency_seconds", "detector time per event",
            buckets=(.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1),
            registry=r)
        self.changelog = Counter(
            "straycode_changelog_records", "table changelog records written (checkpoints)",
            ["table"], registry=r)
        self.checkpoints = Counter("straycode_checkpoints",
                                   "checkpoint slices that wrote states", ["agent"], registry=r)
        self.unwritten = Gauge("straycode_unwritten_states",
                               "changed states not yet written to their table", ["table"],
                               registry=r)
        self.held = Gauge("straycode_held_messages",
                          "input messages handled and held until their states are written",
                          ["table"], registry=r)
        self.started = time.time()

    def checkpointed(self, table: str, written: int, checkpoint) -> None:
        """A checkpoint slice of `table` wrote `written` states."""
        if written:
            self.changelog.labels(table).inc(written)
            self.checkpoints.labels(table).inc()
        self.unwritten.labels(table).set(len(checkpoint.changes))
        self.held.labels(table).set(checkpoint.held_count)

    def expose(self) -> bytes:
        return generate_latest(self.registry)


def install_pages(app: faust.App, metrics: Metrics, health) -> None:
    """GET /metrics (Prometheus text format) and GET /healthz (JSON; 503 until the worker
    has partitions assigned and its tables recovered)."""

    @app.page("/metrics")
    async def _metrics(web, request):
        return web.bytes(metrics.expose(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def _healthz(web, request):
        body = health()
        return web.json(body, status=200 if body["ok"] else 503)
