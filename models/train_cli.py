"""`straycode train`: learn from your own labels.

`--out calibration.yaml` fits per-reason scales: users are split into train and held-out
groups (no user on both sides), the calibrator is fitted on the first and compared with
the default weights on the second, and the fitted weights are written as a config
override to pass with `--config`.

`--model model.skops` fits a learned model (models/learned.py) on the earlier codes and
measures it on the later ones; it writes the model (skops) and its card
(`model.card.json`). Labels: `--labels L` (ground truth) or `--labels-from-feedback
EVENTS` (users' not_me/me reports only); without labels the model is unsupervised.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from straycode.detector.learned import ModelError

from .calibrate import TermCalibrator, term_matrix
from .features import feedback_labels, join_labels, load_score_records, truth_labels
from .learned import KINDS, card_path, save_model, train_model


def load_joined(scores_path: str, labels_path: str | None = None,
                labels: pd.DataFrame | None = None) -> pd.DataFrame:
    scores = pd.read_json(scores_path, lines=True)
    if labels is None:
        labels = pd.read_json(labels_path, lines=True)
    labels = labels[["code_event_id", "label"]]
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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--labels", help="labels JSONL {code_event_id, label} (ground truth)")
    source.add_argument("--labels-from-feedback", metavar="EVENTS",
                        help="take labels from the user_feedback events of this JSONL file "
                             "(not_me -> 1, me -> 0)")
    parser.add_argument("--out", help="calibration: config override YAML to write")
    parser.add_argument("--model", metavar="OUT",
                        help="learned model: write OUT (skops) and its card beside it")
    parser.add_argument("--kind", default="hgb", choices=KINDS,
                        help="learned model: calibrated gradient boosting (default), logistic "
                             "regression, or isolation_forest (unsupervised)")
    parser.add_argument("--test-fraction", type=float, default=0.3,
                        help="learned model: the latest share of codes held out for testing")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength")
    parser.add_argument("--seed", type=int, default=0, help="split / model seed")


def _labels(args: argparse.Namespace) -> tuple[pd.DataFrame | None, str]:
    if args.labels:
        return truth_labels(args.labels), "labels"
    if args.labels_from_feedback:
        return feedback_labels(args.labels_from_feedback), "feedback"
    return None, "none"


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.model:
        print("straycode train: give --out (calibration) and/or --model (learned model)",
              file=sys.stderr)
        return 2
    try:
        labels, source = _labels(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"straycode train: {exc}", file=sys.stderr)
        return 2
    if args.out:
        if labels is None:
            print("straycode train: --out needs --labels or --labels-from-feedback", file=sys.stderr)
            return 2
        status = run_calibration(args, labels)
        if status:
            return status
    if args.model:
        return run_model(args, labels, source)
    return 0


def run_calibration(args: argparse.Namespace, labels: pd.DataFrame) -> int:
    from straycode.settings import load_settings
    base_bias = load_settings(args.config)["detector"]["bias"]
    try:
        result = train(load_joined(args.scores, labels=labels), args.C, args.seed, base_bias)
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


def run_model(args: argparse.Namespace, labels: pd.DataFrame | None, source: str) -> int:
    try:
        records = load_score_records(args.scores)
        if labels is None:
            labels = pd.DataFrame({"code_event_id": pd.Series(dtype=object),
                                   "label": pd.Series(dtype=float), "label_t": pd.Series(dtype=float)})
        frame = join_labels(records, labels)
        estimator, card = train_model(frame, args.kind, args.seed, args.test_fraction, source)
        card = save_model(estimator, card, args.model)
    except ModelError as exc:
        print(f"straycode: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as exc:
        print(f"straycode train: {exc}", file=sys.stderr)
        return 2
    print(f"learned model: {card['kind']} ({card['note']})")
    window = card["data_window"]
    print(f"  data {window['first_code']} .. {window['last_code']}; test window from "
          f"{window['test_start']} (last training code {window['train_last_code']})")
    print("  rows " + ", ".join(f"{k} {v}" for k, v in card["rows"].items()))
    print(f"  test window metrics (labels: {source}; later codes than any training row)")
    for name, metrics in card["test_metrics"].items():
        if isinstance(metrics, dict):
            print(f"    {name:<20} ROC-AUC {metrics['roc_auc']}  PR-AUC {metrics['pr_auc']}")
    print(f"  training {card['training_seconds']} s; sha256 {card['sha256']}")
    print(f"wrote {args.model} and {card_path(args.model)}")
    return 0
