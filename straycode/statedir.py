"""Detector state that outlives a run: a state directory (`replay --state`, `backfill`,
`load-state`).

Layout (format version 1)::

    DIR/CURRENT                   name of the generation in use, e.g. "gen-00000003"
    DIR/gen-00000003/manifest.json
                    /users.jsonl.gz        one line per user:  <JSON user id> TAB <UserState.to_bytes()>
                    /networks.jsonl.gz     one line per key:   <JSON key> TAB <exact NetworkState>
                    /population.json.gz    population frequencies (detector/snapshot.py)
                    /core.json             watermark, pending codes' timers, counters

Lines are in byte order of the key, so the same state always gives the same files. A save
writes a new generation in ``gen-N.tmp``, renames it to ``gen-N``, then replaces
``CURRENT`` (write ``CURRENT.tmp``, fsync, rename): a crash at any point leaves the
previous generation readable, and leftovers are removed by the next save.

The manifest names the format and straycode versions, the watermark, counts, the SHA-256
and size of every file (checked when loading), and a fingerprint of the settings that
change what the detector stores and scores: a state built under other settings is
refused (``--accept-settings-change`` loads it with a warning).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import IO, Iterator, Mapping

import orjson

from . import __version__
from .detector.contract import utc_iso
from .detector.engine import Detector
from .detector.snapshot import (population_from_bytes, population_size,
                                population_to_bytes)
from .detector.state import USER_STATE_VERSION, NetworkState, UserState
from .diskstore import DiskStore
from .settings import detector_settings

log = logging.getLogger("straycode.state")

FORMAT = "straycode-state"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
USERS, NETWORKS, POPULATION, CORE, MANIFEST = (
    "users.jsonl.gz", "networks.jsonl.gz", "population.json.gz", "core.json", "manifest.json")
RUNS_KEPT = 50


class StateError(Exception):
    """A state directory that cannot be used as asked (a user mistake: straycode.cli
    prints it as one line and exits 2)."""


# ---------------------------------------------------------------------- fingerprints
def settings_fingerprint(settings: Mapping) -> str:
    """SHA-256 of the settings that change what the detector stores or scores: the
    detector section (windows, ages, weights, thresholds), the policy, the input rules
    that decide which events are dead letters, and the learned model's content."""
    det = detector_settings(settings)
    model = det.get("model_path")
    if model and (det.get("model_weight") or 0) > 0:
        det["model_path"] = _file_sha256(Path(model)) if Path(model).is_file() else str(model)
    else:
        det["model_path"] = None
    blob = orjson.dumps({"detector": det, "input": dict(settings["input"])},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def enrichment_fingerprint(detector: Detector) -> dict:
    """Which GeoIP databases built the stored contexts (type and build time)."""
    out = {}
    for name in ("city_reader", "asn_reader"):
        reader = getattr(detector.enricher, name, None)
        meta = reader.metadata() if reader is not None else None
        out[name.split("_")[0]] = (None if meta is None else
                                   {"type": meta.database_type, "build_epoch": meta.build_epoch})
    return out


# ---------------------------------------------------------------------- reading
def current_generation(root: Path) -> Path | None:
    """The generation directory in use; None when `root` holds no state yet (missing or
    empty). Raises StateError for a directory that is not a state directory."""
    if not root.exists():
        return None
    if not root.is_dir():
        raise StateError(f"state {root}: not a directory")
    pointer = root / CURRENT
    if not pointer.exists():
        leftovers = [p for p in root.iterdir()
                     if not p.name.endswith(".tmp") and not p.name.startswith(".")]
        if leftovers:
            raise StateError(f"state {root}: not a straycode state directory "
                             f"(no {CURRENT} file, but it holds {leftovers[0].name!r})")
        return None
    name = pointer.read_text().strip()
    gen = root / name
    if not name.startswith("gen-") or "/" in name or not gen.is_dir():
        raise StateError(f"state {root}: {CURRENT} names {name!r}, which is not a generation "
                         "directory here")
    return gen


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of the state in `root` (None: no state yet), its format checked and
    every file checked against it (size and SHA-256) before anything is decoded."""
    root = Path(root)
    gen = current_generation(root)
    if gen is None:
        return None
    try:
        manifest = orjson.loads((gen / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StateError(f"state {root}: unreadable manifest in {gen.name}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateError(f"state {root}: {gen.name}/{MANIFEST} is not a straycode state manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise StateError(f"state {root}: format version {version!r}, this straycode "
                         f"({__version__}) reads format version {FORMAT_VERSION} only")
    if manifest.get("user_state_version", 0) > USER_STATE_VERSION:
        raise StateError(f"state {root}: user states of version {manifest['user_state_version']}"
                         f", this straycode reads up to version {USER_STATE_VERSION}")
    if manifest.get("network_state_version") != NetworkState.VERSION:
        raise StateError(f"state {root}: network states of version "
                         f"{manifest.get('network_state_version')!r}, this straycode reads "
                         f"version {NetworkState.VERSION}")
    files = manifest.get("files") or {}
    for name in (USERS, NETWORKS, POPULATION, CORE):
        expected, path = files.get(name), gen / name
        if expected is None or not path.is_file():
            raise StateError(f"state {root}: {gen.name}/{name} is missing")
        if path.stat().st_size != expected["bytes"] or _file_sha256(path) != expected["sha256"]:
            raise StateError(f"state {root}: {gen.name}/{name} does not match its manifest "
                             "(sha256 or size): the state is corrupt")
    manifest["_generation"] = str(gen)
    return manifest


def check_settings(root: str | Path, manifest: dict, settings: Mapping,
                   accept_change: bool = False) -> None:
    """Refuse a state built under other detector settings (or warn, when accepted)."""
    if manifest["settings_sha256"] == settings_fingerprint(settings):
        return
    text = (f"state {root} was built under other detector settings (detector, policy, input "
            "sections or the learned model differ)")
    if not accept_change:
        raise StateError(text + ": rerun with the same settings, or pass "
                         "--accept-settings-change to continue it under these")
    log.warning("%s; continuing under the current settings (--accept-settings-change): "
                "scores will differ from one run over all the history", text)


class _HashingReader:
    """File wrapper that hashes what is read through it."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _checked(gen: Path, name: str, manifest: dict) -> Iterator[bytes]:
    """Lines of a gzip file of the generation; raises StateError at the end when the file
    is not the one the manifest describes."""
    expected = manifest["files"].get(name)
    if expected is None:
        raise StateError(f"state {gen.parent}: the manifest does not list {name}")
    with open(gen / name, "rb") as raw:
        hashing = _HashingReader(raw)
        try:
            with gzip.GzipFile(fileobj=hashing, mode="rb") as lines:
                yield from lines
        except (OSError, EOFError) as exc:
            raise StateError(f"state {gen.parent}: {gen.name}/{name} is corrupt: {exc}") from None
        hashing.drain()
    if hashing.sha.hexdigest() != expected["sha256"] or hashing.size != expected["bytes"]:
        raise StateError(f"state {gen.parent}: {gen.name}/{name} does not match its manifest "
                         "(sha256 or size): the state is corrupt")


def iter_records(manifest: dict, name: str) -> Iterator[tuple[str, bytes]]:
    """(key, value bytes) of users.jsonl.gz or networks.jsonl.gz, checked against the manifest."""
    gen = Path(manifest["_generation"])
    for line in _checked(gen, name, manifest):
        key, _, value = line.rstrip(b"\n").partition(b"\t")
        yield orjson.loads(key), value


def read_blob(manifest: dict, name: str) -> bytes:
    return b"".join(_checked(Path(manifest["_generation"]), name, manifest))


def read_core(manifest: dict) -> dict:
    gen = Path(manifest["_generation"])
    data = (gen / CORE).read_bytes()
    expected = manifest["files"][CORE]
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise StateError(f"state {gen.parent}: {gen.name}/{CORE} does not match its manifest")
    return orjson.loads(data)


def _fill(store, records, decode) -> None:
    """Saved (key, encoded state) records into an empty store: a DiskStore takes the bytes
    as they are, an in-memory store the decoded state."""
    if isinstance(store, DiskStore):
        for key, raw in records:
            store.put_raw(key, raw)
    else:
        for key, raw in records:
            store[key] = decode(raw)


def restore(detector: Detector, manifest: dict) -> None:
    """Load a saved state into a fresh detector (its stores empty): users, networks,
    population, clock, timers and counters."""
    _fill(detector.users, iter_records(manifest, USERS), UserState.from_bytes)
    _fill(detector.networks, iter_records(manifest, NETWORKS), NetworkState.from_bytes)
    detector.population = population_from_bytes(read_blob(manifest, POPULATION))
    detector.restore_core(read_core(manifest))


# ---------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _write_records(path: Path, records: Iterator[tuple[str, bytes]]) -> int:
    n = 0
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0) as out:
            for key, value in records:
                out.write(orjson.dumps(key) + b"\t" + value + b"\n")
                n += 1
        raw.flush()
        os.fsync(raw.fileno())
    return n


def _user_records(users) -> Iterator[tuple[str, bytes]]:
    if isinstance(users, DiskStore):
        yield from users.items_raw()
    else:
        for key in sorted(users):
            yield key, users[key].to_bytes()


def _network_records(networks) -> Iterator[tuple[str, bytes]]:
    if isinstance(networks, DiskStore):
        yield from networks.items_raw()
    else:
        for key in sorted(networks):
            yield key, networks[key].to_bytes(exact=True)


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _generation_number(gen: Path | None) -> int:
    return int(gen.name.split("-", 1)[1]) if gen is not None else 0


def _replace_current(root: Path, name: str) -> None:
    tmp = root / (CURRENT + ".tmp")
    _write_file(tmp, name.encode() + b"\n")
    os.replace(tmp, root / CURRENT)
    _fsync_dir(root)


def save(detector: Detector, root: str | Path, settings: Mapping, run: dict,
         previous: dict | None = None, enrichment: dict | None = None) -> dict:
    """Write the detector's state as a new generation of `root`, atomically; returns the
    manifest. `run` describes this run (kept in the manifest's list of runs), `previous`
    is the manifest the run started from (its runs are carried on), `enrichment` the
    enrichment_fingerprint() taken while the GeoIP readers were open."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    old = current_generation(root)
    for leftover in root.glob("*.tmp"):          # a save that crashed before
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    for gen in root.glob("gen-*"):               # ... or before it switched CURRENT
        if gen.is_dir() and (old is None or gen.name != old.name):
            shutil.rmtree(gen)
    name = f"gen-{_generation_number(old) + 1:08d}"
    tmp = root / (name + ".tmp")
    tmp.mkdir()
    counts = {"users": _write_records(tmp / USERS, _user_records(detector.users)),
              "networks": _write_records(tmp / NETWORKS, _network_records(detector.networks))}
    with open(tmp / POPULATION, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0) as out:
            out.write(population_to_bytes(detector.population))
        raw.flush()
        os.fsync(raw.fileno())
    core = detector.export_core()
    _write_file(tmp / CORE, orjson.dumps(core))
    counts.update(pending_codes=detector.pending_count(), timers=len(core["heap"]),
                  population_values=population_size(detector.population))
    files = {}
    for fname in (USERS, NETWORKS, POPULATION, CORE):
        files[fname] = {"bytes": (tmp / fname).stat().st_size, "sha256": _file_sha256(tmp / fname)}
    runs = list((previous or {}).get("runs", []))[-(RUNS_KEPT - 1):] + [run]
    watermark = detector.watermark
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "straycode_version": __version__,
        "generation": _generation_number(old) + 1,
        "saved_at": utc_iso(time.time()),
        "watermark": watermark, "watermark_ts": utc_iso(watermark) if watermark else None,
        "settings_sha256": settings_fingerprint(settings),
        "enrichment": enrichment if enrichment is not None else enrichment_fingerprint(detector),
        "user_state_version": USER_STATE_VERSION, "network_state_version": NetworkState.VERSION,
        "counts": counts, "stats": core["stats"], "files": files, "runs": runs,
    }
    _write_file(tmp / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    _fsync_dir(tmp)
    final = root / name
    os.rename(tmp, final)
    _fsync_dir(root)
    _replace_current(root, name)                 # the switch: before it, the old state is in use
    for gen in root.glob("gen-*"):
        if gen.is_dir() and gen.name != name:
            shutil.rmtree(gen, ignore_errors=True)
    manifest["_generation"] = str(final)
    return manifest


def check_enrichment(root: str | Path, manifest: dict, now: dict) -> None:
    """Warn when other GeoIP databases built the stored contexts (a monthly update is
    normal; another vendor's database makes stored places look new)."""
    if manifest.get("enrichment") != now:
        log.warning("state %s was built with other GeoIP databases (%s); now %s: stored places "
                    "may not match new lookups", root, manifest.get("enrichment"), now)
