"""A MutableMapping kept in RocksDB (rocksdict) with a bounded cache of decoded values.

`straycode backfill` runs the Detector over months of history with its `users` and
`networks` stores in one of these, so memory stays bounded by the cache, not by the
number of users. The Detector never changes a state without writing it back
(``users[k] = state``), so a write-back cache is exact: a changed value is marked dirty
and encoded when it leaves the cache or on flush(); an unchanged one is simply dropped.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Callable, Iterator


class DiskStore(MutableMapping):
    """str keys -> objects, stored as `encode(obj)` bytes in a RocksDB directory."""

    def __init__(self, path: str | Path, encode: Callable[[object], bytes],
                 decode: Callable[[bytes], object], cache_size: int = 20_000):
        from rocksdict import Options, Rdict

        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # bounded memory: small memtables (RocksDB's default is 64 MB each, several per DB)
        options.set_write_buffer_size(8 << 20)
        options.set_max_write_buffer_number(2)
        self.path = Path(path)
        self.db = Rdict(str(path), options)
        self.encode, self.decode = encode, decode
        self.cache: dict[str, object] = {}      # least recently used first
        self.dirty: set[str] = set()
        self.cache_size = max(1, int(cache_size))
        self.reads = self.writes = 0            # RocksDB reads (cache misses) and writes

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, key: str):
        cache = self.cache
        value = cache.pop(key, _MISSING)
        if value is _MISSING:
            raw = self.db.get(key.encode())
            self.reads += 1
            if raw is None:
                raise KeyError(key)
            value = self.decode(raw)
            cache[key] = value
            self._evict()
        else:
            cache[key] = value                  # most recently used last
        return value

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value) -> None:
        cache = self.cache
        cache.pop(key, None)
        cache[key] = value
        self.dirty.add(key)
        self._evict()

    def __delitem__(self, key: str) -> None:
        self.cache.pop(key, None)
        self.dirty.discard(key)
        self.db.delete(key.encode())

    def __contains__(self, key) -> bool:
        return key in self.cache or self.db.get(key.encode()) is not None

    def __iter__(self) -> Iterator[str]:
        """Keys in byte order (flushes first)."""
        self.flush()
        for key in self.db.keys():
            yield key.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items_raw(self) -> Iterator[tuple[str, bytes]]:
        """(key, encoded value) in byte order of the key, after a flush."""
        self.flush()
        for key, raw in self.db.items():
            yield key.decode(), raw

    def put_raw(self, key: str, raw: bytes) -> None:
        """Store an encoded value without decoding it (loading a saved state)."""
        self.cache.pop(key, None)
        self.dirty.discard(key)
        self.db.put(key.encode(), raw)

    # ------------------------------------------------------------------ cache
    def _evict(self) -> None:
        cache = self.cache
        while len(cache) > self.cache_size:
            key = next(iter(cache))
            value = cache.pop(key)
            if key in self.dirty:
                self.dirty.discard(key)
                self.db.put(key.encode(), self.encode(value))
                self.writes += 1

    def flush(self) -> None:
        """Write every changed cached value (they stay cached)."""
        for key in self.dirty:
            self.db.put(key.encode(), self.encode(self.cache[key]))
            self.writes += 1
        self.dirty.clear()

    def close(self) -> None:
        self.db.close()


_MISSING = object()
