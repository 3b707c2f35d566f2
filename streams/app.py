"""The faust.App, built from settings (nothing at import time, so tests and the CLI can
build several apps with different ports, data dirs, group ids and fetch waits: the
consumer is chosen per app, see faust_compat.StreamsApp)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import faust

from .connection import faust_broker_url, faust_credentials
from .faust_compat import StreamsApp


def store_url(kcfg: Mapping) -> str:
    """rocksdb:// only when rocksdict is importable; memory:// otherwise (state then lives
    only in the changelog and is re-read on every start)."""
    wanted = str(kcfg.get("store") or "rocksdb://")
    if wanted.startswith("rocksdb") and importlib.util.find_spec("rocksdict") is None:
        return "memory://"
    return wanted


def create_app(settings: Mapping, *, web_port: int | None = None,
               datadir: str | None = None, env: Mapping[str, str] | None = None,
               exact_commit: bool = True) -> faust.App:
    """The worker's app; `exact_commit=False` keeps Faust's own commit rule (the benchmark's
    no-op reference, which holds no message back)."""
    kcfg = settings["kafka"]
    datadir = Path(datadir or kcfg["datadir"]).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    return StreamsApp(
        kcfg["app_id"],
        exact_commit=exact_commit,
        eager_delivery=bool(kcfg["eager_delivery"]),
        fetch_max_wait_ms=kcfg.get("fetch_max_wait_ms"),   # None: Faust's 1.5 s
        broker=faust_broker_url(kcfg),
        broker_credentials=faust_credentials(kcfg, env),
        store=store_url(kcfg),
        datadir=str(datadir),
        web_port=int(web_port or kcfg["web_port"]),
        web_bind=str(kcfg.get("web_host") or "0.0.0.0"),
        topic_partitions=int(kcfg["partitions"]),
        topic_replication_factor=int(kcfg["replication_factor"]),
        stream_buffer_maxsize=int(kcfg["stream_buffer_maxsize"]),
        producer_max_batch_size=int(kcfg["producer_max_batch_size"]),
        producer_linger=float(kcfg["producer_linger_s"]),
        broker_max_poll_records=int(kcfg["broker_max_poll_records"]),
        broker_max_poll_interval=float(kcfg["broker_max_poll_interval"]),
        broker_session_timeout=float(kcfg["broker_session_timeout"]),
        broker_heartbeat_interval=float(kcfg["broker_heartbeat_interval"]),
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        autodiscover=False,
        web_enabled=True,
    )
