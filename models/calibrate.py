"""Learn how much each kind of evidence should count, from labelled decisions.

straycode scores with hand-set, label-free weights on day one. Once a team has labels —
users' ``not_me`` / ``me`` feedback, analysts' verdicts, or a red-team exercise — a
logistic regression over the per-reason log-odds terms of each score line gives one scale
factor per reason code and a new bias. Because the detector's logit is already
``bias + sum(terms)``, the fitted model maps exactly onto the config
(``detector.bias`` + ``detector.term_scale``): the explanation stays the same, only the
weights move. Scales are kept non-negative so that no evidence flips its meaning.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted


def term_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """One column per reason code, holding that term's log-odds weight (0 when absent)."""
    rows = [terms if isinstance(terms, dict) else {} for terms in scores["terms"]]
    return pd.DataFrame.from_records(rows, index=scores.index).fillna(0.0).sort_index(axis=1)


class TermCalibrator(ClassifierMixin, BaseEstimator):
    """Logistic regression on detector terms, exportable as a straycode config override.

    Parameters follow scikit-learn conventions: ``C`` is the inverse L2 strength,
    ``class_weight`` ("balanced" reweights rare attacks but then the bias is no longer a calibrated prior), ``min_support`` is how many non-zero rows
    a reason code needs before its scale is learned (others keep scale 1.0).
    """

    def __init__(self, C: float = 1.0, class_weight: str | None = None, min_support: int = 20):
        self.C = C
        self.class_weight = class_weight
        self.min_support = min_support

    def fit(self, X: pd.DataFrame, y) -> "TermCalibrator":
        y = np.asarray(y).astype(int)
        support = (X != 0).sum(axis=0)
        self.columns_ = [c for c in X.columns if support[c] >= self.min_support]
        self.classes_ = np.array([0, 1])
        if not self.columns_ or len(set(y)) < 2:
            raise ValueError("need both classes and at least one reason code with enough support")
        # the untouched terms keep scale 1: they enter as a fixed offset
        offset = X.drop(columns=self.columns_).sum(axis=1).to_numpy()
        model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000)
        # fit on [terms..., offset] and read the offset's coefficient as a sanity check
        design = np.column_stack([X[self.columns_].to_numpy(), offset])
        model.fit(design, y)
        coefs = model.coef_[0]
        self.scale_ = {c: float(max(0.0, round(coefs[i], 4))) for i, c in enumerate(self.columns_)}
        self.offset_coef_ = float(coefs[-1])
        self.bias_ = float(round(model.intercept_[0], 4))
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "scale_")
        logit = np.full(len(X), self.bias_)
        for column in X.columns:
            logit += X[column].to_numpy() * self.scale_.get(column, 1.0)
        return logit

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def to_config(self) -> dict:
        """The learned weights as a `--config` file body."""
        check_is_fitted(self, "scale_")
        return {"detector": {"bias": self.bias_, "term_scale": dict(sorted(self.scale_.items()))}}
