"""The detector's hot-path shortcuts give the same answers as the general code they skip:
the cached-minute timestamp parser, the two-term evidence combiner, and the inlined
population lookups of the hierarchical likelihood ratio."""
from __future__ import annotations

import itertools
import random

import pytest

from straycode.detector import contract, scoring
from straycode.detector.baseline import Baseline
from straycode.detector.contract import ContractError, parse_ts
from straycode.detector.population import Population

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


def test_two_term_combine_equals_the_general_combine():
    values = [-3.0, -1.5, -0.3, -0.0, 0.0, 0.3, 1.5, 4.0, 1e-300, -1e-300]
    for a, b in itertools.product(values, repeat=2):
        assert scoring._combine2(a, b).hex() == scoring._combine([a, b]).hex(), (a, b)


class _Counting(Population):
    """A Population subclass: the scorer must use its methods, not the inlined lookups."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def p(self, name, value):
        self.calls += 1
        return super().p(name, value)


def test_family_llr_inlined_population_equals_its_methods():
    base, plain, counting = Baseline(), Population(), _Counting()
    feats = {"net": ("AS1", "1.2.3.0/24"), "loc": ("GB", "GB/London"), "ua": ("Win", "Chrome|Win"),
             "dev": ("d1",)}
    other = {"net": ("AS2", "5.6.7.0/24"), "loc": ("FR", "FR/Paris"), "ua": ("Mac", "Safari|Mac"),
             "dev": ("d2",)}
    for i, f in enumerate([feats, feats, other]):
        base.learn(1_700_000_000 + i, f, 9, None, None, None, None,
                   {"max_values_per_feature": 12, "history_max_age_days": 180, "max_devices": 30})
        plain.observe(f)
        counting.observe(f)
    for family, values in [("net", ("AS1", "1.2.3.0/24")), ("loc", ("GB", None)),
                           ("ua", ("Linux", "Firefox|Linux")), ("net", ("AS9", "9.9.9.0/24"))]:
        a = scoring._family_llr(base, plain, family, values, 1.0)
        b = scoring._family_llr(base, counting, family, values, 1.0)
        assert a.hex() == b.hex()
    assert counting.calls == 4
    assert dict(plain.totals) == dict(counting.totals)
    assert {k: dict(v) for k, v in plain.counts.items()} == {k: dict(v) for k, v in counting.counts.items()}
