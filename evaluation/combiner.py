"""Fitting the learned combiner on evaluation results; serving needs only
detectors/combiner.py (numpy), never scikit-learn.

    combiner = fit_combiner(records, features, seed=0, provenance={...})
    risks = combiner_risks(combiner, records)

Logistic regression on standardised features (a missing feature takes its training mean;
the L2 strength chosen by cross-validated AUROC on the fitting items), then Platt's
sigmoid (default) or an isotonic map fitted on out-of-fold logits (5-fold, stratified,
seeded): calibrating on in-sample logits would make the probabilities overconfident.
"""

from __future__ import annotations

import warnings

import numpy as np

from detectors.combiner import LearnedCombiner, known_features
from detectors.metrics import auroc


def usable_features(records: list[dict], enabled: set[str]) -> list[str]:
    """The features a profile with ``enabled`` detectors can feed, present in the data."""
    out = []
    for name, detector in known_features().items():
        if detector is not None and detector not in enabled:
            continue
        if any(r["scores"].get(name) is not None for r in records):
            out.append(name)
    return out


def feature_matrix(records: list[dict], features: list[str]) -> np.ndarray:
    """(N, F) float64 with NaN where a record lacks a feature."""
    return np.array([[np.nan if (v := r["scores"].get(f)) is None else float(v)
                      for f in features] for r in records], dtype=np.float64)


def _folds(y: np.ndarray, seed: int):
    """The seeded stratified folds fitting uses (5, fewer when a class has fewer items)."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=min(5, int(np.bincount(y).min())), shuffle=True,
                           random_state=seed)


def fit_combiner(records: list[dict], features: list[str], *, seed: int = 0,
                 provenance: dict | None = None, calibration: str = "platt",
                 ) -> LearnedCombiner:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import cross_val_predict

    x = feature_matrix(records, features)  # (N, F)
    y = np.array([r["hallucinated"] for r in records], dtype=np.int64)  # (N,)
    if len(set(y.tolist())) < 2:
        raise ValueError("the fitting split has one class only; record more items")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value at all
        column_means = np.nanmean(x, axis=0)  # (F,)
    impute = np.where(np.isnan(column_means), 0.0, column_means)
    x = np.where(np.isnan(x), impute, x)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale  # (N, F)
    folds = _folds(y, seed)
    # the L2 strength by cross-validated AUROC on the fitting items: with tens of correct
    # answers a fixed C=1 lets nine correlated features overfit
    search = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=folds, scoring="roc_auc",
                                  max_iter=2000).fit(z, y)
    model = LogisticRegression(C=float(search.C_[0]), max_iter=2000)
    logits = cross_val_predict(model, z, y, cv=folds, method="decision_function")  # (N,)
    if calibration == "platt":
        sigmoid = LogisticRegression(C=1e6, max_iter=2000).fit(logits[:, None], y)
        platt, knots_x, knots_y = (float(sigmoid.coef_[0, 0]),
                                   float(sigmoid.intercept_[0])), (), ()
    elif calibration == "isotonic":
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            logits, y)
        platt = None
        knots_x = tuple(map(float, isotonic.X_thresholds_))
        knots_y = tuple(map(float, isotonic.y_thresholds_))
    else:
        raise ValueError(f"calibration is platt or isotonic, not {calibration!r}")
    model.fit(z, y)
    info = {**(provenance or {}), "items": len(y), "hallucinated": int(y.sum()),
            "l2_C": float(search.C_[0]), "calibration": calibration,
            "out_of_fold_auroc": auroc(logits, y)}
    return LearnedCombiner(
        features=tuple(features), impute=tuple(map(float, impute)),
        mean=tuple(map(float, mean)), scale=tuple(map(float, scale)),
        coef=tuple(map(float, model.coef_[0])), intercept=float(model.intercept_[0]),
        knots_x=knots_x, knots_y=knots_y, fitted_on=info, platt=platt)


def combiner_risks(combiner: LearnedCombiner, records: list[dict]) -> np.ndarray:
    """The combiner's risk for each record, from the scores the record carries. (N,)"""
    return np.array([combiner.risk(r["scores"]) for r in records], dtype=np.float64)


def out_of_fold_risks(combiner: LearnedCombiner, records: list[dict], seed: int = 0,
                      ) -> np.ndarray:
    """The combiner's risk of each of the records it was fitted on, each from a model fitted
    on the other folds: P_i = g(z_i^(−k(i))), with z^(−k) the logit of a logistic regression
    of the combiner's L2 strength fitted without fold k (the seeded folds of
    :func:`fit_combiner`, on its standardisation) and g the combiner's own calibration map
    (Platt's sigmoid or its isotonic knots). A threshold chosen on these risks is not
    flattered by the fit. (N,)"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    x = feature_matrix(records, list(combiner.features))  # (N, F)
    x = np.where(np.isnan(x), np.asarray(combiner.impute), x)
    z = (x - np.asarray(combiner.mean)) / np.asarray(combiner.scale)  # (N, F)
    y = np.array([r["hallucinated"] for r in records], dtype=np.int64)  # (N,)
    model = LogisticRegression(C=float(combiner.fitted_on["l2_C"]), max_iter=2000)
    logits = cross_val_predict(model, z, y, cv=_folds(y, seed),
                               method="decision_function")  # (N,)
    if combiner.platt is not None:
        a, b = combiner.platt
        return 1.0 / (1.0 + np.exp(-(a * logits + b)))
    return np.interp(logits, np.asarray(combiner.knots_x), np.asarray(combiner.knots_y))
