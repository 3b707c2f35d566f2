"""Feature matrix (pandas) for the learned model, and the labels to train it on.

The columns are :data:`straycode.detector.learned.FEATURE_NAMES`; :func:`feature_frame`
is a vectorised path that must give exactly what the pure per-record
:func:`straycode.detector.learned.features` gives (tests/test_learned.py checks it), so a
model trained here scores the same numbers online.

Labels come from ground truth (``--labels``: simulator or analyst verdicts) or from what
users report (``--labels-from-feedback EVENTS``: ``not_me`` -> 1, ``me`` -> 0 for the
code it names, the latest verdict per code winning); each label carries the time it became
known (``label_t``) so that training can refuse labels from after its cut-off.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from straycode.detector.contract import ContractError, decode_line
from straycode.detector.learned import (CHANNELS, FEATURE_NAMES, FLOWS, PURPOSES, TERM_CODES,
                                        features)

from .evaluate import _read_jsonl


def load_score_records(path: str | Path) -> pd.DataFrame:
    """Score lines (``straycode replay --scores``) with their event time ``t`` (epoch s)."""
    df = pd.DataFrame(_read_jsonl(path))
    if df.empty:
        raise ValueError(f"{path}: no score lines")
    for column in ("code_event_id", "user_id", "ts", "score", "flow", "purpose", "terms", "channel"):
        if column not in df.columns:
            df[column] = None
    if df["ts"].isna().any():
        raise ValueError(f"{path}: score lines without ts (needed for the time split)")
    df = df.drop_duplicates("code_event_id", keep="last").reset_index(drop=True)
    when = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    df["t"] = (when - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    return df


def feature_frame(records: pd.DataFrame) -> pd.DataFrame:
    """One row per score record, columns :data:`FEATURE_NAMES` (float64), same index."""
    n = len(records)
    out = np.zeros((n, len(FEATURE_NAMES)))
    terms = records["terms"] if "terms" in records.columns else pd.Series([None] * n)
    col = {code: i for i, code in enumerate(TERM_CODES)}
    for r, row_terms in enumerate(terms):
        if isinstance(row_terms, dict):
            for code, weight in row_terms.items():
                i = col.get(code)
                if i is not None and weight:
                    out[r, i] = float(weight)
    start = len(TERM_CODES)
    for key, values in (("flow", FLOWS), ("purpose", PURPOSES), ("channel", CHANNELS)):
        column = records[key].to_numpy() if key in records.columns else np.full(n, None)
        for j, value in enumerate(values):
            out[:, start + j] = (column == value)
        start += len(values)
    return pd.DataFrame(out, columns=list(FEATURE_NAMES), index=records.index)


def feature_frame_rowwise(records: pd.DataFrame) -> pd.DataFrame:
    """The reference path: the pure function, one record at a time (slow, exact)."""
    rows = [features(rec) for rec in records.to_dict("records")]
    return pd.DataFrame(rows, columns=list(FEATURE_NAMES), index=records.index, dtype=float)


def truth_labels(path: str | Path) -> pd.DataFrame:
    """``{code_event_id, label}`` lines; known from the start (``label_t`` = -inf)."""
    df = pd.DataFrame(_read_jsonl(path))
    if "code_event_id" not in df.columns or "label" not in df.columns:
        raise ValueError(f"{path}: label lines need code_event_id and label")
    df = df[["code_event_id", "label"]].drop_duplicates("code_event_id", keep="last")
    return df.assign(label=df["label"].astype(int), label_t=-np.inf).reset_index(drop=True)


def feedback_labels(events_path: str | Path) -> pd.DataFrame:
    """Labels from ``user_feedback`` events only: what users would actually report.

    Lines that are not valid contract-v1 events are skipped (replay dead-letters them);
    only lines mentioning ``user_feedback`` are decoded."""
    rows = []
    with open(events_path, "rb") as fh:
        for line in fh:
            if b"user_feedback" not in line:
                continue
            try:
                event = decode_line(line)
            except ContractError:
                continue
            if event.type == "user_feedback":
                rows.append((event.code_event_id, 1 if event.verdict == "not_me" else 0, event.t))
    df = pd.DataFrame(rows, columns=["code_event_id", "label", "label_t"])
    # the latest verdict about a code wins (a user may correct themselves)
    df = df.sort_values("label_t", kind="stable").drop_duplicates("code_event_id", keep="last")
    return df.reset_index(drop=True)


def join_labels(records: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Score records with ``label`` (NaN = unlabelled) and ``label_t`` columns."""
    out = records.merge(labels[["code_event_id", "label", "label_t"]], on="code_event_id",
                        how="left", validate="one_to_one")
    return out.sort_values(["t", "code_event_id"], kind="stable").reset_index(drop=True)

