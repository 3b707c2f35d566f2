"""`straycode evaluate`: print detection quality, optionally write an HTML report."""
from __future__ import annotations

import argparse
import json
import sys

from .evaluate import evaluate_frames, format_table, load_labels, load_scores


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="labels JSONL from `straycode simulate`")
    p.add_argument("--scores", required=True, help="scores JSONL from `straycode replay --scores`")
    p.add_argument("--report", metavar="DIR", help="write DIR/report.html (self-contained)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        labels, scores = load_labels(args.labels), load_scores(args.scores)
    except (OSError, ValueError, KeyError) as exc:
        print(f"straycode evaluate: {exc}", file=sys.stderr)
        return 2
    metrics = evaluate_frames(labels, scores)
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(metrics, fh, indent=2)
    if args.report:
        from .report import write_report
        path = write_report(metrics, labels, scores, args.report)
        print(f"\nreport: {path}")
    return 0
