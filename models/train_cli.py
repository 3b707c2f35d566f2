"""`straycode train --scores S --labels L --out calibration.yaml`: fit per-reason scales.

Users are split into train and held-out groups (no user on both sides), the calibrator is
fitted on the first and compared with the default weights on the second, and the fitted
weights are written as a config override to pass with `--config`.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from .calibrate import TermCalibrator, term_matrix


def load_joined(scores_path: str, labels_path: str) -> pd.DataFrame:
    scores = pd.read_json(scores_path, lines=True)
    labels = pd.read_json(labels_path, lines=True)[["code_event_id", "label"]]
    joined = scores.merge(labels, on="code_event_id", how="inner", validate="one_to_one")
    if joined.empty:
        raise ValueError("no score line matches a label (code_event_id)")
    return joined.reset_index(drop=True)


def train(joined: pd.DataFrame, C: float = 1.0, seed: int = 0, base_bias: float = -2.5) -> dict:
    X, y, groups = term_matrix(joined), joined["label"].astype(int), joined["user_id"]
    split = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=seed)
    train_idx, test_idx = next(split.split(X, y, groups))
    model = TermCalibrator(C=C).fit(X.iloc[train_idx], y.iloc[train_idx])
    held_y = y.iloc[test_idx]
    default_logit = base_bias + X.iloc[test_idx].sum(axis=1)
    fitted_logit = model.decision_function(X.iloc[test_idx])
    report = {"rows": len(joined), "train_rows": len(train_idx), "heldout_rows": len(test_idx),
              "heldout_positives": int(held_y.sum())}
    if held_y.nunique() == 2:
        report.update(
            default_roc_auc=round(roc_auc_score(held_y, default_logit), 4),
            fitted_roc_auc=round(roc_auc_score(held_y, fitted_logit), 4),
            default_pr_auc=round(average_precision_score(held_y, default_logit), 4),
            fitted_pr_auc=round(average_precision_score(held_y, fitted_logit), 4))
    return {"model": model, "report": report}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", required=True, help="scores JSONL from `straycode replay`")
    parser.add_argument("--labels", required=True, help="labels JSONL {code_event_id, label}")
    parser.add_argument("--out", required=True, help="config override YAML to write")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength")
    parser.add_argument("--seed", type=int, default=0, help="train/held-out user split seed")


def run(args: argparse.Namespace) -> int:
    from straycode.settings import load_settings
    base_bias = load_settings(args.config)["detector"]["bias"]
    try:
        result = train(load_joined(args.scores, args.labels), args.C, args.seed, base_bias)
    except (ValueError, KeyError) as exc:
        print(f"straycode train: {exc}", file=sys.stderr)
        return 2
    model, report = result["model"], result["report"]
    with open(args.out, "w") as fh:
        fh.write("# learned by `straycode train`; use with --config\n")
        yaml.safe_dump(model.to_config(), fh, sort_keys=True)
    print("held-out comparison (users not seen in training)")
    for key, value in report.items():
        print(f"  {key:<20} {value}")
    print("scales (reason code -> factor; unlisted = 1.0)")
    for code, factor in model.to_config()["detector"]["term_scale"].items():
        print(f"  {code:<28} {factor}")
    print(f"wrote {args.out}")
    return 0
