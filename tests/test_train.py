"""models/calibrate + `straycode train`: learned scales favour predictive evidence, and
the written override is a valid config that changes the detector's scores."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from straycode.detector.scoring import Signals, score_code
from straycode.detector.baseline import Baseline
from straycode.detector.population import Population
from straycode.models.calibrate import TermCalibrator, term_matrix
from straycode.settings import detector_settings, load_settings


def _synthetic(n: int = 4000, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    informative = np.where(y == 1, rng.normal(2.0, 0.5, n), rng.normal(0.0, 0.5, n))
    noise = rng.normal(1.0, 1.0, n)                     # present but unrelated to the label
    terms = [{"new_device": round(a, 3), "unusual_hour": round(b, 3)} for a, b in zip(informative, noise)]
    return pd.DataFrame({"terms": terms, "user_id": [f"u{i % 500}" for i in range(n)]}), y


def test_calibrator_scales_informative_evidence_above_noise():
    frame, y = _synthetic()
    model = TermCalibrator().fit(term_matrix(frame), y)
    assert model.scale_["new_device"] > 1.0
    assert model.scale_["unusual_hour"] < 0.3
    proba = model.predict_proba(term_matrix(frame))[:, 1]
    assert proba[y == 1].mean() > proba[y == 0].mean() + 0.5


def test_calibrator_needs_both_classes():
    frame, y = _synthetic(200)
    with pytest.raises(ValueError):
        TermCalibrator().fit(term_matrix(frame), np.zeros_like(y))


def test_learned_config_changes_detector_scores(tmp_path):
    frame, y = _synthetic()
    override = TermCalibrator().fit(term_matrix(frame), y).to_config()
    path = tmp_path / "cal.yaml"
    import yaml
    path.write_text(yaml.safe_dump(override))
    default = detector_settings(load_settings(env={}))
    learned = detector_settings(load_settings(path, env={}))
    assert learned["term_scale"] == override["detector"]["term_scale"]
    sig = Signals(t=1.7e9, purpose="security_settings", flow="password_verified", ctx=None,
                  verified=False)
    base, pop = Baseline(), Population()
    before = score_code(base, pop, sig, default)
    after = score_code(base, pop, sig, learned)
    assert before.score != after.score


def test_train_cli_writes_loadable_override(tmp_path):
    frame, y = _synthetic(3000)
    scores, labels = tmp_path / "scores.jsonl", tmp_path / "labels.jsonl"
    with open(scores, "w") as s_out, open(labels, "w") as l_out:
        for i, (row, label) in enumerate(zip(frame.itertuples(), y)):
            s_out.write(json.dumps({"code_event_id": f"c{i}", "user_id": row.user_id,
                                    "score": 0.5, "terms": row.terms}) + "\n")
            l_out.write(json.dumps({"code_event_id": f"c{i}", "label": int(label)}) + "\n")
    out = tmp_path / "cal.yaml"
    run = subprocess.run([sys.executable, "-m", "straycode.cli", "train", "--scores", str(scores),
                          "--labels", str(labels), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "fitted_roc_auc" in run.stdout
    settings = load_settings(out, env={})
    assert settings["detector"]["term_scale"]["new_device"] > 1.0
