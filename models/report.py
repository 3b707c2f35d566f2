"""Self-contained HTML evaluation report: charts are PNGs inlined as base64 so the file
opens from disk, mailed or attached to a ticket, with no server and no network."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from .evaluate import merge  # noqa: E402

CREDIT = ('IP geolocation by <a href="https://db-ip.com">DB-IP</a>, https://db-ip.com '
          '(CC BY 4.0)')


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return '<img alt="chart" src="data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode() + '">'


def _columns(both: pd.DataFrame) -> list[str]:
    return [c for c in ("score", "issue_score") if both[c].notna().any()]


def roc_chart(both: pd.DataFrame) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    y = both["label"].to_numpy(dtype=int)
    for col in _columns(both):
        keep = both[col].notna().to_numpy()
        fpr, tpr, _ = roc_curve(y[keep], both[col].to_numpy(dtype=float)[keep])
        for ax in axes:
            ax.step(fpr, tpr, where="post", label=col)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set_title("ROC")
    axes[1].set_xscale("log")
    axes[1].set_xlim(1e-4, 1)
    axes[1].set_title("ROC, low false-positive region (log FPR)")
    for x in (0.001, 0.005, 0.01):
        axes[1].axvline(x, color="grey", lw=0.5, ls="--")
    for ax in axes:
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
    return _png(fig)


def pr_chart(both: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    y = both["label"].to_numpy(dtype=int)
    for col in _columns(both):
        keep = both[col].notna().to_numpy()
        p, r, _ = precision_recall_curve(y[keep], both[col].to_numpy(dtype=float)[keep])
        ax.step(r, p, where="post", label=col)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left")
    return _png(fig)


def distribution_chart(both: pd.DataFrame) -> str:
    order = (both.groupby(["label", "scenario"]).size().reset_index()
             .sort_values(["label", "scenario"])[["label", "scenario"]].values.tolist())
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(order) + 1.2))
    data = [both[(both["label"] == lab) & (both["scenario"] == sc)]["score"].dropna().to_numpy()
            for lab, sc in order]
    parts = ax.boxplot(data, orientation="horizontal", widths=0.6, patch_artist=True, showfliers=False)
    for box, (lab, _) in zip(parts["boxes"], order):
        box.set_facecolor("#e07070" if lab == 1 else "#70a0e0")
    rng = np.random.default_rng(0)   # fixed jitter so the report is reproducible
    for i, d in enumerate(data, 1):
        if len(d) > 1500:          # keep the PNG light: a fixed sample of the points
            d = rng.choice(d, 1500, replace=False)
        ax.plot(d, i + rng.uniform(-0.18, 0.18, len(d)), ".", ms=2, alpha=0.35, color="black")
    ax.set_yticks(range(1, len(order) + 1))
    ax.set_yticklabels([f"{sc} ({'attack' if lab else 'legit'})" for lab, sc in order])
    ax.set_xlabel("score")
    ax.set_xlim(-0.02, 1.02)
    ax.set_title("Score per scenario (red: attack, blue: legit)")
    return _png(fig)


def _table(rows: list[dict], cols: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape("-" if v is None else str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(metrics: dict, labels: pd.DataFrame, scores: pd.DataFrame) -> str:
    merged, _ = merge(labels, scores)
    both = merged[merged["_merge"] == "both"].copy()
    both["label"] = both["label"].astype(int)
    a = metrics["alerts"]
    ranking = [dict(name=k, **metrics[k]) for k in ("score", "issue_score") if metrics.get(k)]
    confusion = (f"<table><tr><th></th><th>alerted</th><th>not alerted</th></tr>"
                 f"<tr><th>attack (label 1)</th><td>{a['tp']}</td><td>{a['fn']}</td></tr>"
                 f"<tr><th>legit (label 0)</th><td>{a['fp']}</td><td>{a['tn']}</td></tr></table>")
    act = metrics["actions"]
    charts = ""
    if both["label"].nunique() == 2:
        charts = f"<h2>Ranking curves</h2>{roc_chart(both)}{pr_chart(both)}"
    if len(both):
        charts += f"<h2>Score distributions</h2>{distribution_chart(both)}"
    cov = metrics["coverage"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>straycode evaluation</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f3f3f3}}img{{max-width:100%}}footer{{margin-top:3em;color:#666;font-size:90%}}</style></head><body>
<h1>straycode evaluation</h1>
<h2>Coverage</h2>{_table([cov], [k for k in cov if not k.startswith('examples')])}
<h2>Ranking quality</h2>{_table(ranking, ['name', 'n', 'positives', 'roc_auc', 'pr_auc', 'tpr_at_fpr_0.001', 'tpr_at_fpr_0.005', 'tpr_at_fpr_0.01'])}
<p>TPR at a fixed FPR is read from the ROC curve as a step function (the best threshold whose FPR does not exceed the target).</p>
<h2>Alerts (the detector's own decision)</h2>{confusion}
<p>precision {_table_num(a['precision'])}, recall {_table_num(a['recall'])}, false-alert rate {_table_num(a['false_alert_rate'])}</p>
<h2>Attack scenarios (recall)</h2>{_table(metrics['attack_scenarios'], ['scenario', 'codes', 'users', 'alerted', 'recall', 'mean_score', 'missing_scores'])}
<h2>Legit scenarios (false alerts)</h2>{_table(metrics['legit_scenarios'], ['scenario', 'codes', 'users', 'alerted', 'false_alert_rate', 'mean_score', 'missing_scores'])}
<h2>Actions</h2><p>force_password_reset where the password was <b>not</b> compromised: <b>{act['reset_violations']}</b>
{html.escape(str(act['reset_violations_by_scenario'] or ''))}; reset on {act['reset_on_compromised']} of
{act['password_compromised_codes']} password-compromised codes (coverage {_table_num(act['reset_coverage'])}).</p>
{_revoke_section(act)}
{charts}
<footer>Generated by straycode evaluate. {CREDIT}.</footer></body></html>"""


def _revoke_section(act: dict) -> str:
    """revoke_sessions where a session was stolen, and each scenario's action correctness."""
    if "by_scenario" not in act:
        return ""
    return (f"<p>revoke_sessions on stolen sessions: <b>{act['revoke_on_stolen']}/"
            f"{act['stolen_session_codes']}</b> (coverage {_table_num(act['revoke_coverage'])}); "
            f"on legit codes: {act['revoke_on_legit']}.</p>"
            "<p>Per scenario: a code is correct when force_password_reset is present exactly "
            "where the password is compromised and revoke_sessions is present where a session "
            "was stolen (never on a legit code).</p>"
            + _table(act["by_scenario"], ["scenario", "label", "codes", "reset_expected", "reset",
                                          "revoke_expected", "revoke", "correct", "correct_rate"]))


def _table_num(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def write_report(metrics: dict, labels: pd.DataFrame, scores: pd.DataFrame, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render(metrics, labels, scores), encoding="utf-8")
    return path
