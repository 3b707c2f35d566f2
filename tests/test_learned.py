"""Learned model (#14): one feature definition online and offline, time split without
look-ahead, safe storage (skops + card), refusal of tampered / mismatched models,
deterministic scoring, the blending rule, and the CLI end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from straycode.detector.alerts import ScoreRecord
from straycode.detector.learned import (FEATURE_NAMES, FEATURE_VERSION, ModelError, apply, blend,
                                        features)
from straycode.detector.scoring import Term, Verdict
from straycode.models.features import (feature_frame, feature_frame_rowwise, feedback_labels,
                                       load_score_records)
from straycode.models.learned import card_path, load_scorer, save_model, time_split, train_model
from straycode.models.evaluate_cli import with_model

BANDS = {"low": 0.5, "medium": 0.75, "high": 0.9, "critical": 0.97}
T0 = 1_767_225_600.0            # 2026-01-01


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "straycode.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _synthetic(n: int = 900, seed: int = 1) -> pd.DataFrame:
    """Score-record-like rows: attacks carry new_device + code_not_entered more often."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.12).astype(int)
    rows = []
    for i, label in enumerate(y):
        terms = {"known_network_and_place": -1.5} if rng.random() < 0.7 - 0.5 * label else {
            "new_network": round(float(rng.normal(2.0, 0.5)), 3)}
        if rng.random() < 0.2 + 0.6 * label:
            terms["new_device"] = round(float(rng.normal(2.5, 0.3)), 3)
        terms["code_not_entered" if rng.random() < 0.05 + 0.7 * label else "code_verified"] = (
            3.0 if label else -4.5)
        logit = -2.5 + sum(terms.values())
        rows.append({"code_event_id": f"c{i:05d}", "user_id": f"u{i % 97}",
                     "ts": pd.Timestamp(T0 + 600 * i, unit="s", tz="UTC").isoformat(),
                     "t": T0 + 600 * i, "score": round(1 / (1 + np.exp(-logit)), 6),
                     "terms": terms, "flow": "password_verified" if i % 5 else "no_password",
                     "purpose": "login", "channel": ["sms", "email"][i % 2], "label": float(label),
                     "label_t": T0 + 600 * i + 3600})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- one feature definition
def test_feature_frame_agrees_with_the_pure_function_on_odd_records():
    records = pd.DataFrame([
        {"terms": {"new_device": 2.5, "code_not_entered": 3.0, "learned_model": 1.0,
                   "some_future_code": 9.0}, "flow": "no_session", "purpose": "payment",
         "channel": "voice"},
        {"terms": None, "flow": None, "purpose": "unknown-purpose"},
        {"terms": {}, "flow": "login_missing", "purpose": "other", "channel": "app"},
        {"terms": {"feedback_not_me": 6.0, "fanout_ip": 0.6}, "flow": "password_verified",
         "purpose": "login", "channel": None},
    ])
    vectorised, rowwise = feature_frame(records), feature_frame_rowwise(records)
    assert list(vectorised.columns) == list(FEATURE_NAMES)
    pd.testing.assert_frame_equal(vectorised, rowwise)
    first = dict(zip(FEATURE_NAMES, features(records.iloc[0].to_dict())))
    assert first["term:new_device"] == 2.5 and first["channel=voice"] == 1.0
    assert first["flow=no_session"] == 1.0 and first["purpose=payment"] == 1.0
    # the label itself (feedback_not_me) and the model's own reason are never features
    assert all(not name.endswith(("feedback_not_me", "learned_model")) for name in FEATURE_NAMES)
    assert sum(features(records.iloc[3].to_dict())) == pytest.approx(0.6 + 2.0)   # + flow, purpose


def test_features_of_a_score_record_object_equal_those_of_its_json(sim):
    records = load_score_records(sim["scores"])
    pd.testing.assert_frame_equal(feature_frame(records), feature_frame_rowwise(records))
    rec = ScoreRecord("c1", "u1", "2026-01-01T00:00:00Z", 0.9, 0.5, "high", True, [],
                      "password_verified", "security_settings", {"new_device": 2.1})
    assert features(rec) == features(json.loads(json.dumps(rec.to_dict())))


# ---------------------------------------------------------------- time split
def test_training_never_sees_codes_or_labels_from_the_test_window():
    frame = _synthetic()
    cut_index = int(len(frame) * 0.7)
    # a code just before the cut whose label (feedback) only arrives after the cut
    frame.loc[cut_index - 1, "label_t"] = frame.loc[cut_index, "t"] + 10
    train, test, start = time_split(frame, 0.3)
    assert start == frame.loc[cut_index, "t"]
    assert (frame.loc[train, "t"] < start).all() and (frame.loc[test, "t"] >= start).all()
    assert not train[cut_index - 1], "a label known only after the cut-off was used for training"
    assert not (train & test).any()
    _model, card = train_model(frame, "logistic", seed=0, test_fraction=0.3)
    assert card["data_window"]["train_last_code"] < card["data_window"]["test_start"]
    late_labels = int(((frame["t"] < start) & (frame["label_t"] >= start)).sum())
    assert late_labels >= 1 and card["rows"]["labelled_after_cutoff_dropped"] == late_labels
    assert card["rows"]["fitted_on"] == int(train.sum())


# ---------------------------------------------------------------- storage and refusal
@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.skops"
    model, card = train_model(_synthetic(), "hgb", seed=4)
    save_model(model, card, path)
    return path


def _copy(stored, tmp_path):
    path = tmp_path / "m.skops"
    path.write_bytes(stored.read_bytes())
    card_path(path).write_text(card_path(stored).read_text())
    return path


def test_saved_model_loads_and_its_card_describes_it(stored):
    scorer = load_scorer(stored)
    card = json.loads(card_path(stored).read_text())
    assert card["supervised"] and card["kind"] == "hgb"
    assert card["features"] == list(FEATURE_NAMES) and card["feature_version"] == FEATURE_VERSION
    assert card["libraries"]["scikit-learn"] and card["libraries"]["skops"]
    assert card["test_metrics"]["model_only"]["roc_auc"] > 0.8
    x = feature_frame(_synthetic(50, seed=9)).to_numpy()
    assert scorer.probabilities(x).shape == (50,)


def test_tampered_model_file_is_refused(stored, tmp_path):
    path = _copy(stored, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_scorer(path)


def test_model_with_untrusted_types_is_refused_even_with_a_matching_hash(stored, tmp_path):
    import hashlib
    from collections import Counter
    path = _copy(stored, tmp_path)
    path.write_bytes(sio.dumps({"model": Counter(a=1)}))     # a type outside the trusted list
    card = json.loads(card_path(path).read_text())
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="untrusted types"):
        load_scorer(path)


@pytest.mark.parametrize("field,value,message", [
    ("feature_version", "sc-features-0", "trained on features"),
    ("features", list(FEATURE_NAMES)[:-1], "trained on features"),
    ("libraries", {"scikit-learn": "0.24.2"}, "scikit-learn 0.24.2"),
])
def test_mismatched_model_is_refused(stored, tmp_path, field, value, message):
    path = _copy(stored, tmp_path)
    card = json.loads(card_path(path).read_text())
    card[field] = value
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message):
        load_scorer(path)


def test_model_without_card_is_refused(stored, tmp_path):
    path = tmp_path / "alone.skops"
    path.write_bytes(stored.read_bytes())
    with pytest.raises(ModelError, match="card"):
        load_scorer(path)


# ---------------------------------------------------------------- determinism
def test_scoring_is_deterministic_and_training_is_reproducible(stored, tmp_path):
    frame = _synthetic()
    x = feature_frame(frame).to_numpy()
    scorer = load_scorer(stored)
    row = list(x[int(np.argmax(frame["label"].to_numpy()))])
    assert scorer.score_one(row) == scorer.score_one(row)
    assert scorer.score_one(row)[1], "an attack-like row names the features behind it"
    again, card = train_model(frame, "hgb", seed=4)
    save_model(again, card, tmp_path / "again.skops")
    other = load_scorer(tmp_path / "again.skops")
    np.testing.assert_array_equal(scorer.probabilities(x), other.probabilities(x))


def test_unsupervised_when_labels_have_one_class_or_none():
    frame = _synthetic(400).assign(label=0.0)
    model, card = train_model(frame, "hgb", seed=0)
    assert card["kind"] == "isolation_forest" and not card["supervised"]
    unlabelled = _synthetic(400).assign(label=np.nan, label_t=np.nan)
    _model, card = train_model(unlabelled, "hgb", seed=0)
    assert card["kind"] == "isolation_forest" and card["rows"]["fitted_on"] == card["rows"]["train_window"]


# ---------------------------------------------------------------- blending
def test_blend_rule():
    assert blend(0.3, 0.9, 0.0) == 0.3
    assert blend(0.2, 1.0, 0.5) == pytest.approx(0.6)
    assert blend(0.2, 1.0, 1.0) == 1.0
    with pytest.raises(ValueError):
        blend(0.2, 0.5, 1.5)


class _FixedScorer:
    def probability(self, x):
        return 0.99

    def explain(self, x, p):
        return [("term:new_device", 0.4)]


def test_apply_blends_recomputes_severity_and_names_the_features():
    verdict = Verdict(0.6, 0.4, "low", [Term("new_device", "d", 1.2)])
    assert apply(_FixedScorer(), verdict, "password_verified", "login", "sms", 0.0, BANDS) is verdict
    out = apply(_FixedScorer(), verdict, "password_verified", "login", "sms", 0.5, BANDS)
    assert out.score == pytest.approx(0.795) and out.severity == "medium"
    assert out.issue_score == 0.4
    reason = [r for r in out.reasons() if r["code"] == "learned_model"][0]
    assert reason["weight"] > 0 and "term:new_device +0.400" in reason["detail"]


def test_online_apply_and_offline_evaluate_blend_the_same(stored):
    frame = _synthetic(60, seed=5)
    scorer = load_scorer(stored)
    offline = with_model(frame, scorer, 0.5, 0.75)["with model (w=0.5)"]["score"].to_numpy()
    for i, rec in enumerate(frame.to_dict("records")):
        terms = [Term(code, "", weight) for code, weight in rec["terms"].items()]
        verdict = Verdict(rec["score"], rec["score"], None, terms)
        online = apply(scorer, verdict, rec["flow"], rec["purpose"], rec["channel"], 0.5, BANDS)
        assert online.score == offline[i]


# ---------------------------------------------------------------- labels from feedback
def test_feedback_labels(tmp_path):
    def ev(i, code, verdict, ts):
        return json.dumps({"event_id": f"f{i}", "type": "user_feedback", "ts": ts, "user_id": "u1",
                           "code_event_id": code, "verdict": verdict})
    path = tmp_path / "ev.jsonl"
    path.write_text("\n".join([
        ev(1, "a", "not_me", "2026-01-01T10:00:00Z"), ev(2, "b", "me", "2026-01-01T11:00:00Z"),
        ev(3, "b", "not_me", "2026-01-01T12:00:00Z"),      # the user corrected themselves
        '{"type": "user_feedback", "broken": true}', "not json user_feedback",
        json.dumps({"event_id": "x", "type": "login", "ts": "2026-01-01T10:00:00Z", "user_id": "u1",
                    "session_id": "s", "password_ok": True, "ip": "192.0.2.1"}),
    ]) + "\n")
    labels = feedback_labels(path).set_index("code_event_id")
    assert labels["label"].to_dict() == {"a": 1, "b": 1}
    assert labels.loc["b", "label_t"] == pd.Timestamp("2026-01-01T12:00:00Z").timestamp()


# ---------------------------------------------------------------- CLI end to end
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    run = _cli("simulate", "--users", 300, "--days", 20, "--seed", 3, "--out", d / "ev.jsonl",
               "--labels", d / "lab.jsonl")
    assert run.returncode == 0, run.stderr
    run = _cli("replay", d / "ev.jsonl", "--alerts", d / "al.jsonl", "--scores", d / "sc.jsonl",
               "--no-progress")
    assert run.returncode == 0, run.stderr
    return {"dir": d, "events": d / "ev.jsonl", "labels": d / "lab.jsonl", "scores": d / "sc.jsonl"}


def test_cli_train_model_and_evaluate_side_by_side(sim):
    d = sim["dir"]
    for source, model in (("--labels-from-feedback", sim["events"]), ("--labels", sim["labels"])):
        out = d / f"model{source}.skops"
        run = _cli("train", "--scores", sim["scores"], source, model, "--model", out)
        assert run.returncode == 0, run.stderr
        card = json.loads(card_path(out).read_text())
        assert card["rows"]["scored_codes"] > 100
        assert card["data_window"]["train_last_code"] < card["data_window"]["test_start"]
        run = _cli("evaluate", "--labels", sim["labels"], "--scores", sim["scores"], "--model", out,
                   "--heldout", "--model-weight", 0.3)
        assert run.returncode == 0, run.stderr
        assert "likelihood only" in run.stdout and "with model (w=0.3)" in run.stdout
        assert "model only" in run.stdout and "alert precision" in run.stdout
    # a tampered model: one line, exit 2, no traceback
    out.write_bytes(out.read_bytes() + b"\0")
    run = _cli("evaluate", "--labels", sim["labels"], "--scores", sim["scores"], "--model", out)
    assert run.returncode == 2
    assert run.stderr.startswith("straycode: ") and run.stderr.count("\n") == 1
    assert "sha256" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("kind", ["hgb", "logistic"])
def test_one_row_fast_path_equals_predict_proba(kind, tmp_path):
    model, card = train_model(_synthetic(), kind, seed=2)
    save_model(model, card, tmp_path / "m.skops")
    scorer = load_scorer(tmp_path / "m.skops")
    x = feature_frame(_synthetic(200, seed=8)).to_numpy()
    assert scorer._decision is not None
    np.testing.assert_allclose(scorer.probabilities(x), model.predict_proba(x)[:, 1],
                               rtol=0, atol=1e-12)
