"""Evaluator metrics against small cases computed by hand."""
from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from straycode.cli import main
from straycode.models.evaluate import evaluate_frames, ranking_metrics, tpr_at_fpr

# 4 attacks, 6 legit codes. Scores sorted: .9(A) .8(A) .7(travel) .4(B) .3(B) .2 .1 .1 .05 0
ROWS = [
    # code, label, scenario, compromised, score, alerted, actions
    ("c1", 1, "stuffing", True, 0.9, True, ["force_password_reset", "review"]),
    ("c2", 1, "stuffing", True, 0.8, True, ["force_password_reset"]),
    ("c3", 1, "pumping", False, 0.4, False, ["force_password_reset"]),   # reset without password
    ("c4", 1, "pumping", False, 0.3, False, []),
    ("c5", 0, "travel", False, 0.7, True, ["force_password_reset"]),      # false alert + bad reset
    ("c6", 0, "travel", False, 0.2, False, []),
    ("c7", 0, "normal", False, 0.1, False, []),
    ("c8", 0, "normal", False, 0.1, False, []),
    ("c9", 0, "normal", False, 0.05, False, []),
    ("c10", 0, "normal", False, 0.0, False, []),
]


def frames(rows=ROWS, issue=None):
    labels = pd.DataFrame([{"code_event_id": c, "user_id": "u" + c, "label": y, "scenario": s,
                            "password_compromised": pc} for c, y, s, pc, *_ in rows])
    scores = pd.DataFrame([{"code_event_id": c, "user_id": "u" + c, "ts": "2026-01-01T00:00:00Z",
                            "score": sc, "issue_score": None if issue is None else issue[i],
                            "severity": None, "alerted": al, "actions": act, "flow": "x"}
                           for i, (c, y, s, pc, sc, al, act) in enumerate(rows)])
    scores["issue_score"] = pd.to_numeric(scores["issue_score"])
    return labels, scores


def test_ranking_metrics_by_hand():
    y = np.array([r[1] for r in ROWS])
    s = np.array([r[4] for r in ROWS])
    m = ranking_metrics(y, s)
    # positive/negative pairs ranked right: .9 and .8 beat all 6, .4 and .3 beat 5 of 6
    assert m["roc_auc"] == pytest.approx(22 / 24)
    # AP = sum over positives of precision at their rank / 4 = (1 + 1 + 3/4 + 4/5) / 4
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75 + 0.8) / 4)
    # no threshold reaches FPR 0.1% except those above the .7 negative: TPR 2/4
    assert m["tpr_at_fpr_0.001"] == pytest.approx(0.5)
    assert m["tpr_at_fpr_0.01"] == pytest.approx(0.5)


def test_tpr_at_fpr_is_a_step_not_a_line():
    fpr = np.array([0.0, 0.0, 0.02, 1.0])
    tpr = np.array([0.0, 0.6, 1.0, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(0.6)   # linear would say 0.8
    assert tpr_at_fpr(fpr, tpr, 0.02) == pytest.approx(1.0)
    assert tpr_at_fpr(np.array([0.5, 1.0]), np.array([0.5, 1.0]), 0.01) == 0.0


def test_alert_precision_recall_and_scenarios():
    m = evaluate_frames(*frames())
    a = m["alerts"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (2, 1, 2, 5)
    assert a["precision"] == pytest.approx(2 / 3)
    assert a["recall"] == pytest.approx(0.5)
    assert a["false_alert_rate"] == pytest.approx(1 / 6)
    attack = {r["scenario"]: r for r in m["attack_scenarios"]}
    assert attack["stuffing"]["recall"] == 1.0 and attack["pumping"]["recall"] == 0.0
    assert attack["pumping"]["mean_score"] == pytest.approx(0.35)
    legit = {r["scenario"]: r for r in m["legit_scenarios"]}
    assert legit["travel"]["false_alert_rate"] == 0.5
    assert legit["normal"]["false_alert_rate"] == 0.0 and legit["normal"]["codes"] == 4
    assert m["issue_score"] is None


def test_action_violations():
    act = evaluate_frames(*frames())["actions"]
    assert act["reset_violations"] == 2
    assert act["reset_violations_by_scenario"] == {"pumping": 1, "travel": 1}
    assert act["password_compromised_codes"] == 2
    assert act["reset_coverage"] == 1.0


def test_issue_score_is_evaluated_separately():
    issue = [0.1, 0.2, 0.3, 0.4, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0]   # only c5 (legit) ranks above all
    m = evaluate_frames(*frames(issue=issue))
    assert m["score"]["roc_auc"] == pytest.approx(22 / 24)
    # each positive beats the five zeros, loses to .9: 4*5 / 24
    assert m["issue_score"]["roc_auc"] == pytest.approx(20 / 24)
    assert m["issue_score"]["tpr_at_fpr_0.001"] == 0.0


def test_coverage_counts_unmatched_lines_and_missing_scores_are_misses():
    labels, scores = frames()
    scores = scores[scores["code_event_id"] != "c1"]                       # attack with no score
    extra = scores.iloc[[0]].assign(code_event_id="ghost")
    dup = scores.iloc[[1]]
    scores = pd.concat([scores, extra, dup], ignore_index=True)
    m = evaluate_frames(labels, scores)
    c = m["coverage"]
    assert c["labels"] == 10 and c["matched"] == 9
    assert c["labels_without_score"] == 1 and c["labels_without_score_attacks"] == 1
    assert c["scores_without_label"] == 1 and c["examples_scores_without_label"] == ["ghost"]
    assert c["duplicate_score_lines"] == 1
    assert m["alerts"]["recall"] == pytest.approx(1 / 4)        # c1 counts as missed
    assert m["score"]["n"] == 9


def test_cli_prints_table_and_writes_report(tmp_path, capsys):
    labels, scores = frames()
    lp, sp = tmp_path / "labels.jsonl", tmp_path / "scores.jsonl"
    lp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in labels.to_dict("records")))
    sp.write_bytes(b"".join(orjson.dumps({k: (None if isinstance(v, float) and np.isnan(v) else v)
                                          for k, v in r.items()}) + b"\n"
                            for r in scores.to_dict("records")))
    rc = main(["evaluate", "--labels", str(lp), "--scores", str(sp), "--report", str(tmp_path / "rep"),
               "--json", str(tmp_path / "m.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "0.9167" in out and "precision 0.6667" in out
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "db-ip.com" in html
    assert orjson.loads((tmp_path / "m.json").read_bytes())["alerts"]["tp"] == 2


def test_cli_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["evaluate", "--labels", str(bad), "--scores", str(bad)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_password_verified_subset_drops_no_password_attacks():
    """Only c1, c2 (compromised) count as positives; both outrank every legit code."""
    m = evaluate_frames(*frames())
    pw = m["score_password_verified"]
    assert pw["roc_auc"] == pytest.approx(1.0)
    assert pw["tpr_at_fpr_0.001"] == pytest.approx(1.0)
    assert m["score"]["roc_auc"] < 1.0


# issue #12: sessions revoked where a session was stolen, actions checked per scenario
STOLEN_ROWS = [
    # code, label, scenario, compromised, stolen, score, alerted, actions
    ("h1", 1, "session_hijack", False, True, 0.9, True, ["revoke_sessions", "notify_user"]),   # right
    ("h2", 1, "session_hijack", False, True, 0.8, True, ["force_password_reset", "revoke_sessions"]),
    ("h3", 1, "session_hijack", False, True, 0.1, False, []),                                  # missed
    ("i1", 1, "infostealer", True, True, 0.9, True, ["force_password_reset", "revoke_sessions"]),
    ("i2", 1, "infostealer", True, True, 0.9, True, ["force_password_reset"]),                  # no revoke
    ("s1", 1, "stuffing", True, False, 0.9, True, ["force_password_reset", "revoke_sessions"]),  # revoke harmless
    ("n1", 0, "network_switch", False, False, 0.7, True, ["revoke_sessions"]),                  # wrong
    ("n2", 0, "network_switch", False, False, 0.0, False, []),
]


def stolen_frames():
    labels = pd.DataFrame([{"code_event_id": c, "user_id": "u" + c, "label": y, "scenario": s,
                            "password_compromised": pc, "session_stolen": st}
                           for c, y, s, pc, st, *_ in STOLEN_ROWS])
    scores = pd.DataFrame([{"code_event_id": c, "user_id": "u" + c, "ts": "2026-01-01T00:00:00Z",
                            "score": sc, "issue_score": sc, "severity": None, "alerted": al,
                            "actions": act, "flow": "password_verified"}
                           for c, y, s, pc, st, sc, al, act in STOLEN_ROWS])
    return labels, scores


def test_revoke_on_stolen_sessions_and_actions_by_scenario():
    act = evaluate_frames(*stolen_frames())["actions"]
    assert act["stolen_session_codes"] == 5
    assert act["revoke_on_stolen"] == 3 and act["revoke_coverage"] == pytest.approx(3 / 5)
    assert act["revoke_on_legit"] == 1
    assert act["reset_violations_by_scenario"] == {"session_hijack": 1}
    rows = {r["scenario"]: r for r in act["by_scenario"]}
    assert [r["scenario"] for r in act["by_scenario"]] == \
        ["infostealer", "session_hijack", "stuffing", "network_switch"]     # attacks first
    assert (rows["session_hijack"]["reset_expected"], rows["session_hijack"]["revoke_expected"]) == (False, True)
    assert (rows["session_hijack"]["reset"], rows["session_hijack"]["revoke"]) == (1, 2)
    assert rows["session_hijack"]["correct"] == 1                 # h2 has a reset, h3 nothing
    assert (rows["infostealer"]["reset_expected"], rows["infostealer"]["revoke_expected"]) == (True, True)
    assert rows["infostealer"]["correct"] == 1                    # i2 lacks the revoke
    assert rows["stuffing"]["revoke_expected"] is False and rows["stuffing"]["correct"] == 1
    assert rows["network_switch"]["correct"] == 1 and rows["network_switch"]["correct_rate"] == 0.5


def test_labels_without_session_stolen_still_load(tmp_path):
    from straycode.models.evaluate import load_labels
    old = tmp_path / "old.jsonl"
    old.write_bytes(b'{"code_event_id":"c1","user_id":"u","label":1,"scenario":"x","password_compromised":true}\n')
    new = tmp_path / "new.jsonl"
    new.write_bytes(b'{"code_event_id":"c2","user_id":"u","label":1,"scenario":"y",'
                    b'"password_compromised":false,"session_stolen":true}\n')
    assert load_labels(old)["session_stolen"].tolist() == [False]
    assert load_labels(new)["session_stolen"].tolist() == [True]


def test_cli_prints_the_revoke_check(tmp_path, capsys):
    labels, scores = stolen_frames()
    lp, sp = tmp_path / "labels.jsonl", tmp_path / "scores.jsonl"
    lp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in labels.to_dict("records")))
    sp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scores.to_dict("records")))
    assert main(["evaluate", "--labels", str(lp), "--scores", str(sp), "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "revoke on stolen sessions: 3/5" in out and "revoke_sessions on legit codes: 1" in out
    line = next(x for x in out.splitlines() if x.startswith("session_hijack ") and "want" in x)
    assert line.split()[-2:] == ["1", "0.3333"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "revoke_sessions" in html and "session_hijack" in html
