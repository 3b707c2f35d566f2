"""Fuzzing the worker's input (broker-free, tests/streams_harness.py): random bytes,
random JSON, mutated valid events, oversized values and impossible or skewed times, mixed
into valid login/code/verify flows. The user agent never crashes; every message is either
handled or dead-lettered with a reason (and acknowledged, so nothing holds a commit); the
valid flows get the same scores and alert ids as `straycode replay` on the valid subset."""
from __future__ import annotations

import asyncio
import hashlib
import random
import string
import time

import orjson
import pytest

from straycode.detector.contract import parse_event
from straycode.replay import run_replay
from streams_events import DAY, T0, iso, labelled_stream
from streams_harness import PARTITIONS, Harness
from streams_helpers import closing_events, partition_of

MAX_BYTES = 4096                     # input.max_line_bytes here: oversized values stay cheap
# a dead letter's excerpt is 1 KB of the input, its key and detail are bounded too; JSON
# escapes a control character as 6 bytes, so the record stays below ~12 KB in any case
DEAD_LETTER_MAX = 16 * 1024
REASONS = {"malformed_json", "not_an_object", "missing_field", "wrong_type", "bad_value",
           "bad_timestamp", "bad_ip", "unknown_type", "too_large", "clock_skew"}
ANY = None                           # a dead letter with any of REASONS


def random_json(rng: random.Random, depth: int = 0):
    """A random JSON value; objects may use the contract's field names, never a valid ts."""
    kinds = ["int", "float", "str", "null", "bool"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-2**63, 2**63 - 1)
    if kind == "float":
        return rng.uniform(-1e308, 1e308)
    if kind == "str":
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 12)))
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    names = ["event_id", "type", "ts", "user_id", "session_id", "ip", "x", "password_ok"]
    return {rng.choice(names): random_json(rng, depth + 1) for _ in range(rng.randint(0, 6))}


MUTATIONS = 11


def mutate(rng: random.Random, base: dict, n: int, clock: float, choice: int | None = None):
    """(value, expected reason) from a valid event already read on its partition, whose
    clock is `clock` (the largest event time read there)."""
    e = dict(base, event_id=f"mut-{n}")
    choice = rng.randrange(MUTATIONS) if choice is None else choice
    if choice == 0:
        del e[rng.choice(["ts", "type", "event_id", "user_id"])]
        return orjson.dumps(e), ANY
    if choice == 1:
        e["ts"] = rng.choice(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "yesterday",
                              "2026-02-30T08:00:00Z", "2026-01-05T08:00:00"])
        return orjson.dumps(e), "bad_timestamp"
    if choice == 2:
        # ahead of the partition's clock and of when it was written (the harness stamps
        # records with the wall clock, as a real-time producer does)
        e["ts"] = iso(max(clock, time.time()) + rng.uniform(4 * DAY, 3 * 365 * DAY))
        return orjson.dumps(e), "clock_skew"
    if choice == 3:
        e["ts"] = iso(clock - rng.uniform(91 * DAY, 20 * 365 * DAY))
        return orjson.dumps(e), "clock_skew"
    if choice == 4:
        e["type"] = "teleport"
        return orjson.dumps(e), "unknown_type"
    if choice == 5:
        e["ip"] = rng.choice(["999.1.2.3", "not-an-ip", "1.2.3"])
        return orjson.dumps(e), "bad_ip"
    if choice == 6:
        raw = orjson.dumps(e)
        return raw[:rng.randint(1, len(raw) - 2)], "malformed_json"
    if choice == 7:
        e["padding"] = "x" * rng.randint(MAX_BYTES, 4 * MAX_BYTES)
        return orjson.dumps(e), "too_large"
    if choice == 8:
        raw = orjson.dumps(dict(e, user_agent="MARK"))
        return raw.replace(b"MARK", b"Mozilla\xff\xfe"), "malformed_json"
    if choice == 9:
        e["session_id" if "session_id" in e else "user_agent"] = rng.choice([7, [], {"a": 1}, True])
        return orjson.dumps(e), ANY
    return orjson.dumps(e) + b" " + orjson.dumps(e), "malformed_json"


def plan(seed: int, h: Harness):
    """The messages in put order, each (topic, key, partition, value, expected) where
    expected is "valid" (in the valid subset), a reason, or ANY."""
    rng = random.Random(seed)
    flows, _attacked = labelled_stream(users=8, days=3, attacked_every=3, prefix=f"fz{seed}-")
    flows += closing_events(T0 + 5 * DAY, tag=f"fz{seed}")     # decides every code
    topics = [h.topic["logins"], h.topic["codes"], h.topic["events"]]
    route = {"login": h.topic["logins"], "code_issued": h.topic["codes"]}
    clock = {p: None for p in range(PARTITIONS)}
    put: list[dict] = []                         # valid events put so far
    out = []
    n = 0

    def valid(e):
        p = partition_of(e["user_id"])
        t = parse_t(e["ts"])
        clock[p] = t if clock[p] is None else max(clock[p], t)
        put.append(e)
        return (route.get(e["type"], h.topic["events"]), e["user_id"].encode(), p,
                orjson.dumps(e), "valid")

    for i, e in enumerate(flows):
        if i == len(flows) // 2:                     # every mutation at least once
            for choice in range(MUTATIONS):
                n += 1
                base = rng.choice(put)
                p = partition_of(base["user_id"])
                value, why = mutate(rng, base, n, clock[p], choice)
                out.append((route.get(base["type"], h.topic["events"]),
                            base["user_id"].encode(), p, value, why))
        while rng.random() < 0.45:
            n += 1
            kind = rng.randrange(5)
            if kind == 0:
                value = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
                key = rng.choice([None, b"", bytes(rng.getrandbits(8) for _ in range(9)),
                                  e["user_id"].encode()])
                out.append((rng.choice(topics), key, rng.randrange(PARTITIONS), value, ANY))
            elif kind == 1:
                user = e["user_id"]
                value = orjson.dumps(random_json(rng))
                out.append((rng.choice(topics), user.encode(), partition_of(user), value, ANY))
            elif kind == 2 and put:
                base = rng.choice(put)
                p = partition_of(base["user_id"])
                value, why = mutate(rng, base, n, clock[p])
                topic = route.get(base["type"], h.topic["events"])
                out.append((topic, base["user_id"].encode(), p, value, why))
            elif kind == 3 and put:                  # an exact re-delivery: valid, a duplicate
                out.append(valid(rng.choice(put)))
            elif kind == 4:
                value = b"\x00" * rng.choice([MAX_BYTES + 1, 1_500_000])
                out.append((rng.choice(topics), e["user_id"].encode(),
                            partition_of(e["user_id"]), value, "too_large"))
        out.append(valid(e))
    return out


def parse_t(ts: str) -> float:
    return parse_event({"event_id": "t", "type": "password_changed", "ts": ts,
                        "user_id": "t"}).t


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_worker_survives_fuzzed_input_and_scores_the_valid_flows_like_replay(
        tmp_path, geo_dbs, seed):
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true",
                STRAYCODE__INPUT__MAX_LINE_BYTES=MAX_BYTES)
    messages = plan(seed, h)
    bad = [m for m in messages if m[4] != "valid"]
    assert len(bad) > 40 and {m[4] for m in bad} >= {"clock_skew", "too_large", ANY}

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            put = []
            for topic, key, partition, value, _expected in messages:
                put.append(await h.put(agent, topic, value, key, partition))
                await h.handled_all(agent, len(put))      # raises if the agent crashed
            return put

    put = asyncio.run(run())

    # every bad message is one dead letter, in order, with its reason, size and digest
    dead = h.dead_letters()
    wanted = [(msg, m[4]) for msg, m in zip(put, messages) if m[4] != "valid"]
    assert len(dead) == len(wanted) == len(h.sent["dead_letters"])
    for d, (msg, why) in zip(dead, wanted):
        assert (d["source"]["topic"], d["source"]["partition"], d["source"]["offset"]) == (
            msg.topic, msg.partition, msg.offset)
        assert d["reason"] in REASONS and (why is ANY or d["reason"] == why), (d, why)
        assert d["size"] == len(msg.value) and d["sha256"] == hashlib.sha256(msg.value).hexdigest()
    assert max(len(v) for _k, v, _p in h.sent["dead_letters"]) < DEAD_LETTER_MAX
    # ... and every message was acknowledged: nothing holds a commit back
    for (topic, partition), n in h.produced.items():
        assert h.commit_position(topic, partition) == n
    assert h.pipe.scoring.stopped == {} and h.sent["events"] == []      # all well keyed

    # the valid flows: the same scores and alerts as straycode replay on the valid subset
    valid_path = tmp_path / "valid.jsonl"
    valid_path.write_bytes(b"".join(m[3] + b"\n" for m in messages if m[4] == "valid"))
    summary = run_replay(str(valid_path), tmp_path / "alerts.jsonl", tmp_path / "scores.jsonl",
                         None, h.settings, progress=False)
    assert summary["dead_letters"] == 0 and summary["duplicates"] > 0
    read = lambda p: [orjson.loads(line) for line in p.read_bytes().splitlines()]
    replay_scores = read(tmp_path / "scores.jsonl")
    scores = [orjson.loads(v) for _k, v, _p in h.sent["scores"]]
    key = lambda s: s["code_event_id"]
    assert sorted(scores, key=key) == sorted(replay_scores, key=key)
    assert sorted(orjson.loads(v)["alert_id"] for _k, v, _p in h.sent["alerts"]) == sorted(
        a["alert_id"] for a in read(tmp_path / "alerts.jsonl"))
    assert len(h.sent["alerts"]) >= 3
