"""Per-event cost of the learned-model path (printed numbers, not a timed test).

    python -m bench.learned_bench --scores sc.jsonl --model model.skops [--n 2000]

For each score record, what the detector's hook would do per decided code:
features() (pure), the model's probability for one row, and apply() (features +
probability + blend + severity; the explanation is lazy). explain() (occlusion, one
batched call) is paid only when an alert renders the learned_model reason.
"""
from __future__ import annotations

import argparse
import time

from straycode.detector.learned import apply, features
from straycode.detector.scoring import Term, Verdict
from straycode.models.features import load_score_records
from straycode.models.learned import load_scorer

BANDS = {"low": 0.5, "medium": 0.75, "high": 0.9, "critical": 0.97}


def _per_call(fn, items, repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return (time.perf_counter() - started) / (len(items) * repeat) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=2000, help="score records used")
    args = parser.parse_args()
    scorer = load_scorer(args.model)
    records = load_score_records(args.scores).head(args.n).to_dict("records")
    vectors = [features(r) for r in records]
    verdicts = [(Verdict(r["score"], r["score"], None,
                         [Term(c, "", w) for c, w in (r["terms"] or {}).items()]), r) for r in records]
    for v in vectors[:20]:                     # warm up
        scorer.probability(v)
    rows = [
        ("features() (pure)", _per_call(features, records, 3)),
        ("probability(), one row", _per_call(scorer.probability, vectors)),
        ("apply() = per decided code", _per_call(
            lambda vr: apply(scorer, vr[0], vr[1]["flow"], vr[1]["purpose"], vr[1].get("channel"),
                             0.5, BANDS), verdicts)),
        ("explain() (alerts only)", _per_call(lambda v: scorer.explain(v, 0.0), vectors[:500])),
    ]
    started = time.perf_counter()
    scorer.probabilities(vectors)
    rows.append(("probabilities(), batched, per row",
                 (time.perf_counter() - started) / len(vectors) * 1e6))
    print(f"model {args.model}: {scorer.card['kind']}, {len(records)} score records")
    print(f"{'step':36s} {'us/code':>9s}")
    for name, us in rows:
        print(f"{name:36s} {us:9.1f}")


if __name__ == "__main__":
    main()
