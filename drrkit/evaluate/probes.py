"""Linear probes of frozen features with cross-validation (scikit-learn, seeded folds).

Features are standardised inside each training fold. Classification: logistic regression,
out-of-fold probabilities → AUROC (one-vs-rest macro for more than two classes). Regression:
ridge with its penalty chosen by efficient leave-one-out inside each training fold, out-of-fold
predictions → R². A probe that cannot be run (a class with fewer than two cases, fewer than four
samples) reports why instead of a number.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MAX_FOLDS = 5


def cv_auroc(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Cross-validated AUROC of a logistic-regression probe."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        return {"auroc": None, "n": int(len(labels)), "reason": f"class counts {dict(zip(classes.tolist(), counts.tolist()))}"}
    folds = StratifiedKFold(n_splits=int(min(MAX_FOLDS, counts.min())), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    proba = cross_val_predict(probe, features, labels, cv=folds, method="predict_proba")
    if len(classes) == 2:
        auroc = roc_auc_score(labels, proba[:, 1])
    else:
        auroc = roc_auc_score(labels, proba, multi_class="ovr", average="macro")
    return {"auroc": float(auroc), "n": int(len(labels)), "folds": folds.n_splits,
            "class_counts": {str(c): int(n) for c, n in zip(classes, counts)}}


def cv_r2(features: np.ndarray, target: np.ndarray, seed: int = 0) -> dict:
    """Cross-validated R² of a ridge probe."""
    target = np.asarray(target, dtype=np.float64)
    if len(target) < 4:
        return {"r2": None, "n": int(len(target)), "reason": "fewer than 4 cases"}
    folds = KFold(n_splits=int(min(MAX_FOLDS, len(target))), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    pred = cross_val_predict(probe, features, target, cv=folds)
    return {"r2": float(r2_score(target, pred)), "n": int(len(target)), "folds": folds.n_splits}
