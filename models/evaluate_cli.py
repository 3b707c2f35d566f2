"""`straycode evaluate`: print detection quality, optionally write an HTML report.

With `--model M`, the model-blended score is computed offline from the same score records
(the same feature function the detector uses online) and the headline metrics of
"likelihood only", "with model" and "model only" are printed side by side. `--heldout`
keeps only the codes of the model's test window (later than anything it was trained on).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from .evaluate import _fmt, evaluate_frames, format_table, load_labels, load_scores


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="labels JSONL from `straycode simulate`")
    p.add_argument("--scores", required=True, help="scores JSONL from `straycode replay --scores`")
    p.add_argument("--report", metavar="DIR", help="write DIR/report.html (self-contained)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--model", metavar="M", help="learned model (from `straycode train --model`): "
                                                "compare likelihood only and with the model")
    p.add_argument("--model-weight", type=float, default=None,
                   help="blend weight w in (1-w)*score + w*model (default: detector.model_weight, "
                        "or 0.5 when that is 0)")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--since", metavar="TS", help="only codes at or after this RFC 3339 time")
    window.add_argument("--heldout", action="store_true",
                        help="only codes in the model's test window (needs --model)")


def _window(labels: pd.DataFrame, scores: pd.DataFrame, since: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    when = pd.to_datetime(scores["ts"], utc=True, format="ISO8601")
    t = (when - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    scores = scores[(t >= since).to_numpy()]
    labels = labels[labels["code_event_id"].isin(scores["code_event_id"])]
    return labels.reset_index(drop=True), scores.reset_index(drop=True)


def with_model(scores: pd.DataFrame, scorer, weight: float, threshold: float) -> dict[str, pd.DataFrame]:
    """The score records re-scored: blended with the model, and the model alone."""
    from straycode.detector.learned import blend
    from .features import feature_frame
    blended_in = [t for t in scores["terms"] if isinstance(t, dict) and "learned_model" in t]
    if blended_in:
        raise ValueError("these scores already include a learned model (reason learned_model): "
                         "evaluate --model needs likelihood-only scores")
    p = scorer.probabilities(feature_frame(scores).to_numpy())
    base = scores["score"].to_numpy(dtype=float)
    blended = np.array([blend(s, q, weight) for s, q in zip(base, p)])
    out = {}
    for name, values in ((f"with model (w={weight:g})", blended), ("model only", p)):
        frame = scores.copy()
        frame["score"] = values
        frame["alerted"] = values >= threshold
        out[name] = frame
    return out


def side_by_side(results: dict[str, dict], threshold: float) -> str:
    names = list(results)
    width = max(20, *(len(n) + 2 for n in names))
    rows = [("ROC-AUC", "score", "roc_auc"), ("PR-AUC", "score", "pr_auc"),
            ("TPR@0.1% FPR", "score", "tpr_at_fpr_0.001"), ("TPR@0.5% FPR", "score", "tpr_at_fpr_0.005"),
            ("TPR@1% FPR", "score", "tpr_at_fpr_0.01"),
            ("ROC-AUC (pw)", "score_password_verified", "roc_auc"),
            ("TPR@0.5% FPR (pw)", "score_password_verified", "tpr_at_fpr_0.005"),
            ("alerts", "alerts", "alerts"), ("alert precision", "alerts", "precision"),
            ("alert recall", "alerts", "recall"), ("false alerts", "alerts", "fp")]
    lines = [f"{'':22s}" + "".join(f"{n:>{width}s}" for n in names)]
    for title, section, key in rows:
        cells = []
        for n in names:
            part = results[n].get(section) or {}
            cells.append(f"{_fmt(part.get(key)):>{width}s}")
        lines.append(f"{title:22s}" + "".join(cells))
    lines.append(f"alerts at score >= {threshold:g} (detector.alert_min_severity); "
                 f"(pw) = password-verified attacks vs all legit codes")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from straycode.detector.learned import ModelError
    from straycode.settings import load_settings
    if args.heldout and not args.model:
        print("error: --heldout needs --model", file=sys.stderr)
        return 2
    try:
        labels, scores = load_labels(args.labels), load_scores(args.scores)
    except (OSError, ValueError, KeyError) as exc:
        print(f"straycode evaluate: {exc}", file=sys.stderr)
        return 2
    scorer = None
    if args.model:
        from .learned import load_scorer
        try:
            scorer = load_scorer(args.model)
        except ModelError as exc:
            print(f"straycode: {exc}", file=sys.stderr)
            return 2
    since = None
    if args.heldout:
        since = float(scorer.card["data_window"]["test_start_epoch"])
    elif args.since:
        since = (pd.Timestamp(args.since) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    if since is not None:
        labels, scores = _window(labels, scores, since)
        print(f"codes at or after {pd.Timestamp(since, unit='s', tz='UTC')}: {len(scores)} score lines")
    metrics = evaluate_frames(labels, scores)
    print(format_table(metrics))
    if scorer is not None:
        det = load_settings(args.config)["detector"]
        weight = args.model_weight if args.model_weight is not None else (det.get("model_weight") or 0.5)
        threshold = det["severity"][det["alert_min_severity"]]
        try:
            variants = with_model(scores, scorer, weight, threshold)
        except ValueError as exc:
            print(f"straycode: {exc}", file=sys.stderr)
            return 2
        results = {"likelihood only": metrics}
        results.update({name: evaluate_frames(labels, frame) for name, frame in variants.items()})
        print("")
        print(f"learned model {args.model}: {scorer.card['kind']}, {scorer.card['feature_version']}, "
              f"trained on labels from {scorer.card['label_source']}")
        print(side_by_side(results, threshold))
        metrics = {"likelihood_only": metrics,
                   **{name: results[name] for name in variants}}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(metrics, fh, indent=2)
    if args.report:
        from .report import write_report
        base = metrics["likelihood_only"] if scorer is not None else metrics
        path = write_report(base, labels, scores, args.report)
        print(f"\nreport: {path}")
    return 0
