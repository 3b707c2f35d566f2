"""The detector's hot-path shortcuts give the same answers as the general code they skip:
the cached-minute timestamp parser, the scorer's two-term combiner (bit for bit the sorted
list form it replaced), Context.compact. (An earlier two-term combiner kept beside the list
form, and inlined population lookups, were removed: the replay benchmark showed they did
not pay; the combiner taking its two terms, with no list form left, measured ~5% of
Detector.process in alternating runs.)"""
from __future__ import annotations

import itertools
import random

import pytest

from straycode.detector import contract
from straycode.detector.contract import ContractError, parse_ts

FRACTIONS = ["", ".0", ".5", ".081", ".999", ".123456", ".1234567", ".123456789"]


def _general(ts: str):
    """What parse_ts answers without its fast path: the regex, then the full parser."""
    if not contract._TS_RE.match(ts):
        return "bad_timestamp"
    try:
        return contract._parse_ts(ts)
    except ContractError as exc:
        return exc.reason


def _answer(ts: str):
    try:
        return parse_ts(ts)
    except ContractError as exc:
        return exc.reason


def test_cached_minute_timestamps_parse_like_the_general_path():
    rng = random.Random(3)
    for _ in range(300):
        minute = rng.randrange(0, 4_000_000_000 // 60) * 60
        prefix = contract.datetime.fromtimestamp(minute, contract.timezone.utc).strftime("%Y-%m-%dT%H:%M")
        parse_ts(prefix + ":00Z")                       # now the minute is cached
        for second, frac in itertools.product((0, 7, 59), FRACTIONS):
            ts = f"{prefix}:{second:02d}{frac}Z"
            fast, general = parse_ts(ts), _general(ts)
            assert fast.hex() == general.hex(), ts      # bit for bit, not approximately


@pytest.mark.parametrize("tail", [":60Z", ":6Z", ":5aZ", ":0\u0663Z", ":00.Z", ":00.1234567890Z",
                                  ":00.12aZ", ":00.\u0663Z", ":00.1e3Z", ":00.1_2Z", ":00Z\n",
                                  ":00ZZ", ":00z", ":00.5+01:00", ":00,1Z"])
def test_cached_minute_with_malformed_rest_is_judged_like_the_general_path(tail):
    prefix = "2026-03-01T08:00"
    parse_ts(prefix + ":00Z")
    assert _answer(prefix + tail) == _general(prefix + tail)


def test_compact_context_is_replace_without_user_agent_and_as_org():
    """Context.compact builds its copy field by field: every field but the two it drops is
    kept (a field added to Context and forgotten there fails here)."""
    from dataclasses import fields, replace

    from straycode.detector.enrich import Context

    values = {}
    for i, f in enumerate(fields(Context)):
        values[f.name] = {"lat": 48.5, "lon": 2.25, "asn": 3215, "private": True}.get(f.name, f"v{i}")
    ctx = Context(**values)
    compact = ctx.compact()
    assert compact == replace(ctx, user_agent=None, as_org=None)
    assert compact is not ctx and ctx.user_agent == values["user_agent"]   # the original is kept


def _combine_list_form(terms: list[float]) -> float:
    """The scorer's combiner as it was written for a list of terms (the reference)."""
    pos = sorted((x for x in terms if x > 0), reverse=True)
    neg = sorted(x for x in terms if x < 0)
    total = 0.0
    if pos:
        total += pos[0] + 0.3 * sum(pos[1:])
    if neg:
        total += neg[0] + 0.3 * sum(neg[1:])
    return total


def test_two_term_combiner_is_the_list_form_bit_for_bit():
    from straycode.detector.scoring import _combine

    rng = random.Random(5)
    values = [0.0, 0.4, -0.1, 4.0, -3.0, 1e-300, -1e-300, 2.302585092994046]
    values += [rng.uniform(-3.0, 4.0) for _ in range(150)] + [round(rng.uniform(-3, 4), 1) for _ in range(50)]
    for a, b in itertools.product(values, repeat=2):
        assert _combine(a, b).hex() == _combine_list_form([a, b]).hex(), (a, b)
