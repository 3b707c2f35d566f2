"""A model trained on your own labels: fit, store safely (skops), load, score online.

* Supervised when the training window holds both classes (at least ``MIN_PER_CLASS`` of
  each): calibrated gradient boosting (``hgb``, default) or logistic regression
  (``logistic``). Imbalance is handled in the learner (``class_weight="balanced"``) while
  the sigmoid calibration is fitted unweighted, so probabilities keep the real base rate.
* Unsupervised otherwise (no labels, one class, too few): an IsolationForest; its
  "probability" is the anomaly score of Liu et al. (``-score_samples``, in (0, 1]).
* Time split: train on the earlier codes, test on the later ones. The test window starts
  at the ``1 - test_fraction`` quantile of all scored codes' times; a training row must be
  earlier than that *and* its label must have been known before it (feedback comes hours
  after the code). :func:`time_split` checks this and raises if it is ever violated.
* Persistence: skops, loaded with an explicit list of trusted types (anything else is
  refused, nothing is unpickled); a model card (JSON) beside the model records the
  feature version, data window, row counts, test metrics, library versions and the
  model file's sha256. :func:`load_scorer` refuses a file whose hash, feature version or
  scikit-learn version does not match, with a one-line :class:`ModelError`.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from straycode.detector.learned import FEATURE_NAMES, FEATURE_VERSION, ModelError, blend

from .features import feature_frame

CARD_FORMAT = "straycode-model-card/1"
MIN_PER_CLASS = 6            # fewer labelled codes of a class: no supervised model
# Everything a straycode model file may contain besides skops' default-trusted types
# (numpy arrays, builtins, scikit-learn estimators). Any other type: refused.
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)
KINDS = ("hgb", "logistic", "isolation_forest")


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".card.json")


def _library_versions() -> dict:
    import scipy
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "skops": skops.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__}


# ---------------------------------------------------------------------------- estimators
def make_estimator(kind: str, seed: int, n_train: int | None = None):
    if kind == "hgb":
        base = HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
            min_samples_leaf=max(5, min(20, (n_train or 100) // 50)), l2_regularization=1.0,
            class_weight="balanced", early_stopping=False, random_state=seed)
    elif kind == "logistic":
        base = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    elif kind == "isolation_forest":
        return IsolationForest(n_estimators=200, random_state=seed)
    else:
        raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
    # cv folds are not shuffled (deterministic); ensemble=False: one model at scoring time
    return CalibratedClassifierCV(base, method="sigmoid", cv=3, ensemble=False)


def model_probability(estimator, X: np.ndarray) -> np.ndarray:
    """P(not requested by the user) for each row (anomaly score for an IsolationForest)."""
    if isinstance(estimator, IsolationForest):
        return -estimator.score_samples(X)
    return estimator.predict_proba(X)[:, 1]


# ---------------------------------------------------------------------------- splitting
def time_split(frame: pd.DataFrame, test_fraction: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Boolean masks (train, test) and the test window's start (epoch s).

    ``frame`` has ``t`` (code time) and ``label_t`` (when its label became known, NaN if
    unlabelled). Train: ``t < start`` and label known before ``start``; test: ``t >= start``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test fraction must be between 0 and 1")
    t = frame["t"].to_numpy(dtype=float)
    start = float(np.sort(t)[min(len(t) - 1, int(len(t) * (1.0 - test_fraction)))])
    label_t = frame["label_t"].to_numpy(dtype=float)
    train = (t < start) & ~(label_t >= start)         # unlabelled (NaN) rows pass here
    test = t >= start
    # no look-ahead: nothing the model learns from may come from the test window
    if (t[train] >= start).any() or (label_t[train] >= start).any() or (train & test).any():
        raise RuntimeError("time split leaked test-window rows into training")
    return train, test, start


def _metrics(y: np.ndarray, s: np.ndarray) -> dict:
    if len(y) == 0 or len(np.unique(y)) < 2:
        return {"roc_auc": None, "pr_auc": None}
    return {"roc_auc": round(float(roc_auc_score(y, s)), 4),
            "pr_auc": round(float(average_precision_score(y, s)), 4)}


def _iso(t: float) -> str | None:
    if not np.isfinite(t):
        return None
    return pd.Timestamp(int(round(t * 1000)), unit="ms", tz="UTC").isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------- training
def train_model(frame: pd.DataFrame, kind: str = "hgb", seed: int = 0, test_fraction: float = 0.3,
                label_source: str = "labels", blend_weight: float = 0.5) -> tuple[object, dict]:
    """Fit on the earlier codes, measure on the later ones. ``frame``: score records joined
    with ``label`` (NaN = unlabelled) and ``label_t``. Returns (estimator, card without sha256)."""
    frame = frame.sort_values(["t", "code_event_id"], kind="stable").reset_index(drop=True)
    X_all = feature_frame(frame).to_numpy()
    train, test, start = time_split(frame, test_fraction)
    labelled = frame["label"].notna().to_numpy()
    y_all = frame["label"].fillna(-1).astype(int).to_numpy()
    counts = np.bincount(y_all[train & labelled], minlength=2)
    supervised = kind != "isolation_forest" and counts.min() >= MIN_PER_CLASS
    if supervised:
        fit_rows = train & labelled
        note = f"supervised on {counts[1]} positive and {counts[0]} negative labelled codes"
    else:
        fit_rows = train
        if kind != "isolation_forest":
            note = (f"unsupervised: training window has {counts[1]} positive and {counts[0]} "
                    f"negative labels (need {MIN_PER_CLASS} of each)")
            kind = "isolation_forest"
        else:
            note = "unsupervised (asked for)"
    estimator = make_estimator(kind, seed, int(fit_rows.sum()))
    started = time.perf_counter()
    if supervised:
        estimator.fit(X_all[fit_rows], y_all[fit_rows])
    else:
        estimator.fit(X_all[fit_rows])
    seconds = time.perf_counter() - started

    scored = test & labelled
    y_test = y_all[scored]
    p_test = model_probability(estimator, X_all[scored]) if scored.any() else np.zeros(0)
    s_test = frame["score"].to_numpy(dtype=float)[scored]
    blended = np.array([blend(s, p, blend_weight) for s, p in zip(s_test, p_test)])
    t = frame["t"].to_numpy(dtype=float)
    card = {
        "format": CARD_FORMAT,
        "model_file": None, "sha256": None,
        "kind": kind, "supervised": bool(supervised), "note": note,
        "feature_version": FEATURE_VERSION, "features": list(FEATURE_NAMES),
        "label_source": label_source, "seed": seed, "test_fraction": test_fraction,
        "params": {k: repr(v) for k, v in sorted(estimator.get_params(deep=True).items())
                   if not hasattr(v, "get_params")},
        "data_window": {"first_code": _iso(t.min()), "test_start": _iso(start),
                        "test_start_epoch": start, "last_code": _iso(t.max()),
                        "train_last_code": _iso(t[train].max()) if train.any() else None},
        "rows": {"scored_codes": int(len(frame)), "labelled": int(labelled.sum()),
                 "train_window": int(train.sum()), "fitted_on": int(fit_rows.sum()),
                 "train_positives": int(counts[1]), "train_negatives": int(counts[0]),
                 "test_window": int(test.sum()), "test_labelled": int(scored.sum()),
                 "test_positives": int((y_test == 1).sum()),
                 "labelled_after_cutoff_dropped": int(((t < start) & labelled & ~train).sum())},
        "test_metrics": {"labels": label_source,
                         "likelihood_only": _metrics(y_test, s_test),
                         "model_only": _metrics(y_test, p_test),
                         f"blended_w{blend_weight:g}": _metrics(y_test, blended)},
        "training_seconds": round(seconds, 3),
        "libraries": _library_versions(),
    }
    return estimator, card


# ---------------------------------------------------------------------------- storage
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(estimator, card: dict, path: str | Path) -> dict:
    """Write the model (skops) and its card; every type in the file must be trusted."""
    path = Path(path)
    data = sio.dumps(estimator)
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ModelError(f"model would need untrusted types {untrusted}; not written")
    path.write_bytes(data)
    card = dict(card, model_file=path.name, sha256=_sha256(data))
    card_path(path).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return card


def load_scorer(path: str | Path) -> "LearnedScorer":
    """Load a model after checking its card; raises :class:`ModelError` (one line) if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
    cpath = card_path(path)
    try:
        card = json.loads(cpath.read_text())
    except OSError:
        raise ModelError(f"model card {cpath} missing: refusing a model without its card") from None
    except ValueError:
        raise ModelError(f"model card {cpath} is not valid JSON") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{cpath} is not a straycode model card ({CARD_FORMAT})")
    if card.get("sha256") != _sha256(data):
        raise ModelError(f"model {path} does not match the sha256 in {cpath.name} "
                         f"(tampered or replaced): refused")
    if card.get("feature_version") != FEATURE_VERSION or card.get("features") != list(FEATURE_NAMES):
        raise ModelError(f"model {path} was trained on features {card.get('feature_version')!r}, "
                         f"this straycode computes {FEATURE_VERSION!r}: retrain it")
    trained_with = (card.get("libraries") or {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise ModelError(f"model {path} was trained with scikit-learn {trained_with}, "
                         f"this is {sklearn.__version__}: retrain it")
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as exc:                       # not a skops file at all
        raise ModelError(f"model {path} is not a readable skops file ({type(exc).__name__})") from None
    if untrusted:
        raise ModelError(f"model {path} contains untrusted types {untrusted}: refused")
    try:
        estimator = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise ModelError(f"model {path} could not be loaded ({type(exc).__name__}: {exc})") from None
    if card.get("kind") not in KINDS:
        raise ModelError(f"model card {cpath.name}: unknown kind {card.get('kind')!r}")
    return LearnedScorer(estimator, card)


# ---------------------------------------------------------------------------- scoring
def _tree_walker(hgb: HistGradientBoostingClassifier):
    """The raw decision value of a fitted binary HistGradientBoostingClassifier, walking
    its trees in plain Python (numeric features without missing values, as ours are)."""
    trees = []
    for (predictor,) in hgb._predictors:
        nodes = predictor.nodes
        trees.append(list(zip(nodes["is_leaf"].tolist(), nodes["feature_idx"].tolist(),
                              nodes["num_threshold"].tolist(), nodes["left"].tolist(),
                              nodes["right"].tolist(), nodes["value"].tolist())))
    baseline = float(np.asarray(hgb._baseline_prediction).ravel()[0])

    def decision(X: np.ndarray) -> np.ndarray:
        x = X[0].tolist()
        raw = 0.0 + baseline
        for tree in trees:
            node = tree[0]
            while not node[0]:
                node = tree[node[3] if x[node[1]] <= node[2] else node[4]]
            raw += node[5]
        return np.array([raw])
    return decision


class LearnedScorer:
    """What the detector calls per decided code (see detector/learned.py: ``apply``).

    One code at a time is the online case, and scikit-learn's per-call overhead (input
    validation, OpenMP start-up for gradient boosting) costs milliseconds per row there.
    For the calibrated models the scorer therefore evaluates the fitted pieces directly:
    the base model's decision value (gradient boosting: the baseline plus each tree's
    leaf value, summed in the same order as scikit-learn; logistic regression: the dot
    product) fed to the fitted sigmoid
    ``expit(-(a * f + b))`` -- the arithmetic of ``predict_proba``, checked against it in
    tests/test_learned.py. Offline scoring goes through the same per-row path, so the
    online and offline numbers are the same floats.

    ``explain`` attributes the probability to the features that are non-zero in this
    row: a feature's contribution is how much the probability drops when that feature
    alone is set to 0 (absent term / other category); the top ``n_top`` by magnitude.
    """

    def __init__(self, estimator, card: dict, n_top: int = 3):
        self.estimator = estimator
        self.card = card
        self.n_top = n_top
        self.names = list(FEATURE_NAMES)
        self._decision = None
        if isinstance(estimator, CalibratedClassifierCV) and len(estimator.calibrated_classifiers_) == 1:
            fitted = estimator.calibrated_classifiers_[0]
            base, calibrator = fitted.estimator, fitted.calibrators[0]
            if list(fitted.classes) == [0, 1] and list(base.classes_) == [0, 1]:
                self._a, self._b = float(calibrator.a_), float(calibrator.b_)
                if isinstance(base, HistGradientBoostingClassifier):
                    self._decision = _tree_walker(base)
                elif isinstance(base, LogisticRegression):
                    coef, intercept = base.coef_[0].copy(), float(base.intercept_[0])
                    self._decision = lambda X: X @ coef + intercept

    def probabilities(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if self._decision is None:
            return model_probability(self.estimator, X)
        return np.array([self.probability(row) for row in X], dtype=float)

    def probability(self, features) -> float:
        x = np.asarray(features, dtype=float).reshape(1, -1)
        if self._decision is None:
            return float(model_probability(self.estimator, x)[0])
        p = float(expit(-(self._a * self._decision(x)[0] + self._b)))
        return 1.0 if 1.0 < p <= 1.0 + 1e-5 else p

    def explain(self, features, probability: float | None = None) -> list[tuple[str, float]]:
        x = np.asarray(features, dtype=float)
        active = np.flatnonzero(x)
        if not len(active):
            return []
        p0 = self.probability(x) if probability is None else probability
        contrib = []
        for j in active:
            occluded = x.copy()
            occluded[j] = 0.0
            contrib.append((self.names[j], round(p0 - self.probability(occluded), 4)))
        contrib.sort(key=lambda item: (-abs(item[1]), item[0]))
        return contrib[: self.n_top]

    def score_one(self, features) -> tuple[float, list[tuple[str, float]]]:
        p = self.probability(features)
        return p, self.explain(features, p)
