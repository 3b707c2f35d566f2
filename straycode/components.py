"""The parts every pipeline builds from settings the same way: the GeoIP enricher and the
optional learned model. Replay, the worker and the benchmarks call these; nothing here
reads events."""
from __future__ import annotations

from typing import Mapping

from .detector.enrich import Enricher, default_city_db
from .detector.netkind import NetworkKinds
from .settings import ConfigError


def build_enricher(settings: Mapping, geoip_db: str | None = None,
                   asn_db: str | None = None) -> Enricher:
    """GeoIP enricher: explicit paths, else the configured ones, else DB-IP City Lite."""
    geo = settings["geoip"]
    city = geoip_db or geo["city_db"] or default_city_db()
    try:
        kinds = NetworkKinds.from_settings(geo["network_kinds"])
    except ValueError as exc:                  # a bad pattern: one line, exit 2
        raise ConfigError(str(exc)) from None
    return Enricher(city, asn_db or geo["asn_db"], geo["cache_size"],
                    anonymous_ip_db=geo["anonymous_ip_db"], kinds=kinds)


def load_learned(settings: Mapping):
    """The learned model blended into scores (docs/model.md), or None when it is off.
    Raises ModelError (one line) for a missing, tampered or mismatched model."""
    det = settings["detector"]
    if not det["model_path"] or det["model_weight"] <= 0:
        return None
    from .models.learned import load_scorer
    return load_scorer(det["model_path"])
