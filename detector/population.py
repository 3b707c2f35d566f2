"""Population frequencies of feature values over all users' proven sign-ins.

They stand in for p(x | attacker) in the likelihood ratio: an attacker looks like a
random member of the population, not like this user. Smoothed so that an empty
population (day one) gives every value the same small probability.
"""
from __future__ import annotations

from collections import defaultdict

from .baseline import _LEVEL_NAMES

VOCAB = {"net0": 2000, "loc0": 200, "ua0": 50}   # pseudo-vocabulary sizes for smoothing
CHILD_VOCAB = 20


class Population:
    def __init__(self):
        self.counts: dict[str, dict[str, int]] = defaultdict(dict)
        self.totals: dict[str, int] = defaultdict(int)

    def observe(self, features: dict[str, tuple]) -> None:
        counts, totals = self.counts, self.totals
        for family, names in _LEVEL_NAMES:
            for name, value in zip(names, features[family]):
                if value is not None:
                    table = counts[name]
                    table[value] = table.get(value, 0) + 1
                    totals[name] += 1

    def p(self, name: str, value: str | None) -> float:
        count = self.counts[name].get(value, 0) if value is not None else 0
        return (count + 1.0) / (self.totals[name] + VOCAB.get(name, 1000))

    def p_given(self, name: str, value: str, parent_name: str, parent: str | None) -> float:
        count = self.counts[name].get(value, 0)
        parent_count = self.counts[parent_name].get(parent, 0) if parent is not None else 0
        return (count + 1.0) / (parent_count + CHILD_VOCAB)
