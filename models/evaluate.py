"""Detection quality of a scores file against simulator labels (pure functions).

Ranking quality (ROC-AUC, PR-AUC, TPR at a fixed low FPR) says how good the score is;
the detector's own ``alerted`` decision says what the SOC would see (precision, recall,
false alerts per legit scenario); action checks say whether forced resets land only where
the password is really compromised and whether sessions are revoked where a session was
stolen, overall and per scenario. Codes present on one side only are counted, never
dropped silently.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

FPR_TARGETS = (0.001, 0.005, 0.01)
RESET = "force_password_reset"
REVOKE = "revoke_sessions"


def _read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
    return rows


def load_labels(path: str | Path) -> pd.DataFrame:
    """Label lines; ``session_stolen`` (added with issue #12) is false when absent."""
    df = pd.DataFrame(_read_jsonl(path), columns=["code_event_id", "user_id", "label", "scenario",
                                                  "password_compromised", "session_stolen"])
    df["label"] = df["label"].astype(int)
    df["password_compromised"] = df["password_compromised"].astype(bool)
    df["session_stolen"] = _flag(df["session_stolen"])
    return df


def _flag(column: pd.Series) -> pd.Series:
    """A boolean label column where missing means False."""
    return column.map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v)).astype(bool)


def load_scores(path: str | Path) -> pd.DataFrame:
    cols = ["code_event_id", "user_id", "ts", "score", "issue_score", "severity", "alerted",
            "actions", "flow"]
    df = pd.DataFrame(_read_jsonl(path))
    for c in cols:
        if c not in df.columns:
            df[c] = None
    df["actions"] = df["actions"].apply(lambda a: list(a) if isinstance(a, list) else [])
    df["alerted"] = df["alerted"].fillna(False).astype(bool)
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df["issue_score"] = pd.to_numeric(df["issue_score"], errors="coerce")
    return df


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Best TPR reachable by a threshold whose FPR does not exceed ``target``.

    Step interpolation (no straight line between ROC points): a conservative reading,
    since a point between two thresholds is not achievable by any single threshold.
    """
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def ranking_metrics(y: np.ndarray, s: np.ndarray) -> dict:
    """ROC-AUC, average precision and TPR at the FPR targets for one score column."""
    keep = ~np.isnan(s)
    y, s = y[keep], s[keep]
    out: dict = {"n": int(len(y)), "positives": int(y.sum())}
    if len(np.unique(y)) < 2:
        out.update(roc_auc=None, pr_auc=None, **{f"tpr_at_fpr_{t:g}": None for t in FPR_TARGETS})
        return out
    fpr, tpr, _ = roc_curve(y, s)
    out["roc_auc"] = float(roc_auc_score(y, s))
    out["pr_auc"] = float(average_precision_score(y, s))
    for t in FPR_TARGETS:
        out[f"tpr_at_fpr_{t:g}"] = tpr_at_fpr(fpr, tpr, t)
    return out


def merge(labels: pd.DataFrame, scores: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Outer join on code_event_id; coverage numbers say what did not match."""
    dup = int(scores["code_event_id"].duplicated().sum())
    scores = scores.drop_duplicates("code_event_id", keep="last")
    merged = labels.merge(scores.drop(columns=["user_id"]), on="code_event_id", how="outer",
                          indicator=True)
    only_labels = merged[merged["_merge"] == "left_only"]
    only_scores = merged[merged["_merge"] == "right_only"]
    coverage = {
        "labels": int(len(labels)), "score_lines": int(len(scores) + dup),
        "duplicate_score_lines": dup, "matched": int((merged["_merge"] == "both").sum()),
        "labels_without_score": int(len(only_labels)),
        "labels_without_score_attacks": int(only_labels["label"].sum()),
        "scores_without_label": int(len(only_scores)),
        "examples_labels_without_score": only_labels["code_event_id"].head(5).tolist(),
        "examples_scores_without_label": only_scores["code_event_id"].head(5).tolist(),
    }
    return merged, coverage


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def evaluate_frames(labels: pd.DataFrame, scores: pd.DataFrame) -> dict:
    """All metrics as a plain dict (JSON-serialisable)."""
    merged, coverage = merge(labels, scores)
    labelled = merged[merged["_merge"] != "right_only"].copy()
    labelled["alerted"] = labelled["alerted"].fillna(False).astype(bool)   # no score = no alert
    labelled["label"] = labelled["label"].astype(int)
    labelled["actions"] = labelled["actions"].apply(lambda a: a if isinstance(a, list) else [])
    both = labelled[labelled["_merge"] == "both"]
    y = both["label"].to_numpy()
    out: dict = {"coverage": coverage,
                 "score": ranking_metrics(y, both["score"].to_numpy(dtype=float))}
    issue = both["issue_score"].to_numpy(dtype=float)
    out["issue_score"] = ranking_metrics(y, issue) if not np.isnan(issue).all() else None
    # the headline case: attacks where the password was typed correctly, against all legit codes
    pw = both[(both["label"] == 0) | both["password_compromised"].astype(bool)]
    pw_y = pw["label"].to_numpy()
    out["score_password_verified"] = (ranking_metrics(pw_y, pw["score"].to_numpy(dtype=float))
                                      if 0 < pw_y.sum() < len(pw_y) else None)

    pos, alerted = labelled["label"] == 1, labelled["alerted"]
    tp, fp = int((pos & alerted).sum()), int((~pos & alerted).sum())
    fn, tn = int((pos & ~alerted).sum()), int((~pos & ~alerted).sum())
    out["alerts"] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "alerts": tp + fp,
                     "precision": _rate(tp, tp + fp), "recall": _rate(tp, tp + fn),
                     "false_alert_rate": _rate(fp, fp + tn)}

    per = []
    legit_scores = both.loc[both["label"] == 0, "score"].dropna().to_numpy(dtype=float)
    for (label, scenario), g in labelled.groupby(["label", "scenario"], sort=True):
        scored = g["score"].dropna()
        auc = None
        if label == 1 and len(scored) and len(legit_scores):
            # this scenario's codes against all legit codes: how well the score ranks them
            s_all = np.concatenate([scored.to_numpy(dtype=float), legit_scores])
            y_all = np.concatenate([np.ones(len(scored)), np.zeros(len(legit_scores))])
            auc = float(roc_auc_score(y_all, s_all))
        per.append({"scenario": scenario, "label": int(label), "codes": int(len(g)),
                    "roc_auc": auc,
                    "users": int(g["user_id"].nunique()), "alerted": int(g["alerted"].sum()),
                    "alert_rate": _rate(int(g["alerted"].sum()), len(g)),
                    "mean_score": float(scored.mean()) if len(scored) else None,
                    "missing_scores": int(g["score"].isna().sum())})
    out["attack_scenarios"] = [r | {"recall": r["alert_rate"]} for r in per if r["label"] == 1]
    out["legit_scenarios"] = [r | {"false_alert_rate": r["alert_rate"]} for r in per if r["label"] == 0]

    has_reset = labelled["actions"].apply(lambda a: RESET in a)
    has_revoke = labelled["actions"].apply(lambda a: REVOKE in a)
    compromised = labelled["password_compromised"].astype(bool)
    stolen = (_flag(labelled["session_stolen"]) if "session_stolen" in labelled
              else pd.Series(False, index=labelled.index))
    wrong = labelled[has_reset & ~compromised]
    out["actions"] = {
        "reset_violations": int(len(wrong)),
        "reset_violations_by_scenario": {k: int(v) for k, v in wrong["scenario"].value_counts().sort_index().items()},
        "password_compromised_codes": int(compromised.sum()),
        "reset_on_compromised": int((has_reset & compromised).sum()),
        "reset_coverage": _rate(int((has_reset & compromised).sum()), int(compromised.sum())),
        "stolen_session_codes": int(stolen.sum()),
        "revoke_on_stolen": int((has_revoke & stolen).sum()),
        "revoke_coverage": _rate(int((has_revoke & stolen).sum()), int(stolen.sum())),
        "revoke_on_legit": int((has_revoke & (labelled["label"] == 0)).sum()),
        "by_scenario": action_table(labelled, has_reset, has_revoke, compromised, stolen),
    }
    return out


def action_table(labelled: pd.DataFrame, has_reset: pd.Series, has_revoke: pd.Series,
                 compromised: pd.Series, stolen: pd.Series) -> list[dict]:
    """Per scenario: how many codes got the actions the ground truth calls for.

    Expected: ``force_password_reset`` exactly where the password is compromised;
    ``revoke_sessions`` where a session was stolen, never on a legit code (on other attack
    codes it is harmless and not counted either way). A code is correct when both hold; an
    attack that was not alerted has no actions, so it counts as incorrect where an action
    was expected."""
    attack = labelled["label"] == 1
    reset_ok = has_reset == (attack & compromised)
    revoke_ok = (has_revoke | ~(attack & stolen)) & ~(has_revoke & ~attack)
    correct = reset_ok & revoke_ok
    rows = []
    groups = labelled.groupby(["label", "scenario"]).groups
    for label, scenario in sorted(groups, key=lambda k: (-k[0], k[1])):    # attacks first
        idx = groups[(label, scenario)]
        n = len(idx)
        rows.append({"scenario": scenario, "label": int(label), "codes": n,
                     "reset_expected": bool((attack & compromised)[idx].all()),
                     "revoke_expected": bool((attack & stolen)[idx].all()),
                     "reset": int(has_reset[idx].sum()), "revoke": int(has_revoke[idx].sum()),
                     "correct": int(correct[idx].sum()),
                     "correct_rate": _rate(int(correct[idx].sum()), n)})
    return rows


def evaluate(labels_path: str | Path, scores_path: str | Path) -> dict:
    return evaluate_frames(load_labels(labels_path), load_scores(scores_path))


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def format_table(m: dict) -> str:
    """Human-readable summary for the terminal."""
    lines = []
    c = m["coverage"]
    lines.append(f"codes labelled {c['labels']}, score lines {c['score_lines']}, matched {c['matched']}; "
                 f"labels without score {c['labels_without_score']} "
                 f"({c['labels_without_score_attacks']} attacks), scores without label "
                 f"{c['scores_without_label']}, duplicate score lines {c['duplicate_score_lines']}")
    lines.append("")
    lines.append(f"{'ranking':12s} {'ROC-AUC':>8s} {'PR-AUC':>8s} {'TPR@0.1%':>9s} {'TPR@0.5%':>9s} {'TPR@1%':>8s}")
    for name, title in (("score", "score"), ("issue_score", "issue_score"),
                        ("score_password_verified", "score (pw)")):
        r = m.get(name)
        if r:
            lines.append(f"{title:12s} {_fmt(r['roc_auc']):>8s} {_fmt(r['pr_auc']):>8s} "
                         f"{_fmt(r['tpr_at_fpr_0.001']):>9s} {_fmt(r['tpr_at_fpr_0.005']):>9s} "
                         f"{_fmt(r['tpr_at_fpr_0.01']):>8s}")
    if m.get("score_password_verified"):
        lines.append("score (pw): attacks where the password was typed correctly vs all legit codes")
    a = m["alerts"]
    lines.append("")
    lines.append(f"alerts {a['alerts']}: precision {_fmt(a['precision'])}, recall {_fmt(a['recall'])}, "
                 f"false-alert rate {_fmt(a['false_alert_rate'])} (tp {a['tp']} fp {a['fp']} "
                 f"fn {a['fn']} tn {a['tn']})")
    lines.append("")
    lines.append(f"{'attack scenario':22s} {'codes':>6s} {'users':>6s} {'alerted':>8s} {'recall':>7s} "
                 f"{'mean':>6s} {'ROC-AUC':>8s}")
    for r in m["attack_scenarios"]:
        lines.append(f"{r['scenario']:22s} {r['codes']:6d} {r['users']:6d} {r['alerted']:8d} "
                     f"{_fmt(r['recall']):>7s} {_fmt(r['mean_score']):>6s} {_fmt(r.get('roc_auc')):>8s}")
    lines.append("(ROC-AUC per attack scenario: its codes against all legit codes, by score)")
    lines.append("")
    lines.append(f"{'legit scenario':22s} {'codes':>6s} {'users':>6s} {'alerted':>8s} {'FA rate':>7s} {'mean':>6s}")
    for r in m["legit_scenarios"]:
        lines.append(f"{r['scenario']:22s} {r['codes']:6d} {r['users']:6d} {r['alerted']:8d} "
                     f"{_fmt(r['false_alert_rate']):>7s} {_fmt(r['mean_score']):>6s}")
    act = m["actions"]
    lines.append("")
    lines.append(f"force_password_reset: {act['reset_violations']} violations (password not compromised) "
                 f"{act['reset_violations_by_scenario'] or ''}; on {act['reset_on_compromised']}/"
                 f"{act['password_compromised_codes']} password-compromised codes "
                 f"(coverage {_fmt(act['reset_coverage'])})")
    if "revoke_on_stolen" in act:
        lines.append(f"revoke on stolen sessions: {act['revoke_on_stolen']}/{act['stolen_session_codes']} "
                     f"(coverage {_fmt(act['revoke_coverage'])}); revoke_sessions on legit codes: "
                     f"{act['revoke_on_legit']}")
        lines.append("")
        lines.append(f"{'actions by scenario':22s} {'label':>5s} {'codes':>6s} {'reset':>9s} "
                     f"{'revoke':>9s} {'correct':>8s} {'rate':>7s}")
        for r in act["by_scenario"]:
            want_reset = "want" if r["reset_expected"] else "no"
            want_revoke = "want" if r["revoke_expected"] else ("no" if r["label"] == 0 else "-")
            lines.append(f"{r['scenario']:22s} {r['label']:5d} {r['codes']:6d} "
                         f"{r['reset']:>4d} {want_reset:>4s} {r['revoke']:>4d} {want_revoke:>4s} "
                         f"{r['correct']:8d} {_fmt(r['correct_rate']):>7s}")
    return "\n".join(lines)
