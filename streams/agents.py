"""One straycode worker: its parts, and their lifecycle (recovery, rebalance, timer, health).

    inputs (logins, codes, events, ticks; key = user_id)
      -> UserAgent (user_agent.py): one Detector per input partition, state in the `users`
           table           -> alerts / scores topics (Publisher, publisher.py)
           -> network-ops topic (key = network; NetworkOpsShipper)
                -> NetworkAgent (network_agent.py) -> `network-view` GlobalTable, read by
                                                      every user agent (NetworkStore)
      -> dead-letters topic (undecodable or contract-breaking messages, with reason)

No detection logic lives here (detector/), nor any Faust internals (faust_compat.py).
"""
from __future__ import annotations

import time
from typing import Mapping

import faust

from straycode.components import build_enricher, load_learned
from straycode.detector.engine import Detector
from straycode.detector.enrich import Enricher
from straycode.detector.population import Population
from straycode.settings import detector_settings

from .checkpoint import checkpoint_of
from .clock import PartitionClock
from .faust_compat import Batching, committed_offset
from .metrics import Metrics, install_pages
from .network_agent import NetworkAgent, NetworkOpsShipper
from .publisher import Publisher
from .tables import NetworkStore, network_view, user_table
from .topics import declare_topics, input_topic_names
from .user_agent import UserAgent


class Pipeline:
    """Builds the agents, tables, timer and web pages of one straycode worker."""

    def __init__(self, app: faust.App, settings: Mapping, enricher: Enricher | None = None):
        kcfg = settings["kafka"]
        self.app = app
        self.cfg = detector_settings(settings)
        self.enricher = enricher or build_enricher(settings)
        self.population = Population()           # re-derivable: shared, not persisted
        self.learned = load_learned(settings)    # optional model blended into scores
        self.metrics = Metrics()
        self.topics = declare_topics(app, kcfg)
        self.users = user_table(app, kcfg)
        view = network_view(app, kcfg)
        self.networks = NetworkStore(view)
        partitions = int(kcfg["partitions"])
        self.clock = PartitionClock(input_topic_names(kcfg), self._ask_consumer("highwater"),
                                    self._committed, self._ask_consumer("highwater_polled_at"))
        self.publisher = Publisher(self.topics.dead_letters, self.metrics,
                                   int(kcfg["publish_attempts"]), float(kcfg["publish_backoff_s"]))
        self.shipper = NetworkOpsShipper(self.networks, self.topics.network_ops, partitions,
                                         self.metrics)
        self.scoring = UserAgent(app, settings, self.topics, self.users, self.networks,
                                 self.clock, self.publisher, self.shipper, self.metrics,
                                 self.make_detector)
        self.counting = NetworkAgent(view, self.topics.network_ops, self.publisher,
                                     self.metrics, partitions, Batching.from_settings(kcfg),
                                     checkpoint_of(kcfg))
        self.recovered = False

        self.user_agent = app.agent(self.topics.inputs, name="straycode-users",
                                    concurrency=1)(self.scoring.run)
        self.network_agent = app.agent(self.topics.network_ops, name="straycode-networks",
                                       concurrency=1)(self.counting.run)
        app.timer(float(kcfg["advance_interval_s"]))(self.on_timer)
        app.task(self.declare_outputs)
        self.users.on_recover(self.on_recovered)
        app.on_partitions_revoked.connect(self.on_revoked)
        install_pages(app, self.metrics, self.health)

    def make_detector(self, partition: int, users) -> Detector:
        return Detector(self.cfg, self.enricher, users, self.networks, self.population,
                        self.learned)

    # ------------------------------------------------------------------ lifecycle
    async def declare_outputs(self) -> None:
        """Create the output topics at start, so readers can subscribe before any output."""
        for topic in (self.topics.alerts, self.topics.scores, self.topics.dead_letters):
            await topic.maybe_declare()

    async def on_timer(self) -> None:
        """Ship network operations; wake partitions whose watermark moved without an event
        or whose checkpoint is due (each agent runs only when a message comes); refresh the
        lag gauges."""
        await self.shipper.send()
        await self.scoring.wake()
        for p in self.counting.overdue_partitions():
            try:
                await self.topics.network_ops.send(value=b"{}", partition=p)
            except Exception:                       # the next timer tries again
                self.metrics.publish_errors.labels("network_ops").inc()
        for (topic, p), lag in self.clock.lag().items():
            self.metrics.lag.labels(topic, str(p)).set(lag)

    async def on_recovered(self) -> None:
        tps = {tp for tp in self.app.consumer.assignment()
               if tp.topic in self.clock.input_topics}
        self.clock.assign(tps)
        self.scoring.assign({tp.partition for tp in tps})
        self.recovered = True

    async def on_revoked(self, app, revoked, **kwargs) -> None:
        self.clock.revoke(revoked)
        self.scoring.revoke({tp.partition for tp in revoked
                             if tp.topic in self.clock.input_topics})
        self.counting.revoke({tp.partition for tp in revoked
                              if tp.topic == self.topics.network_ops.get_topic_name()})

    def _ask_consumer(self, method: str):
        """tp -> consumer.<method>(tp), or None while the consumer cannot tell (not started,
        partition not assigned)."""
        def ask(tp):
            try:
                return getattr(self.app.consumer, method)(tp)
            except Exception:
                return None
        return ask

    def _committed(self, tp) -> int | None:
        return committed_offset(self.app.consumer, tp)

    def health(self) -> dict:
        scoring = self.scoring
        return {"ok": self.recovered and not self.app.rebalancing and not scoring.stopped,
                "recovered": self.recovered, "rebalancing": bool(self.app.rebalancing),
                "stopped": {p: why for p, why in sorted(scoring.stopped.items())},
                "partitions": sorted(scoring.detectors),
                "buffered": scoring.reorder.size,
                "held": scoring.checkpoint.held_count,
                "unwritten": len(scoring.checkpoint.changes),
                "watermarks": {p: self.clock.watermark(p) for p in sorted(scoring.detectors)},
                "uptime_s": round(time.time() - self.metrics.started, 1)}
