"""The `combined` judge: the style signals (`persrm_core.evidence.signals`) weighed by a logistic model
fitted on the training split.

Each feature is a signal's difference between the two responses, `s(A) - s(B)`, divided by its
spread on the training pairs; the model has no intercept, so swapping A and B negates every
feature and turns P(A) into 1 - P(A): it is A/B-symmetric by construction. Weights are held
non-negative (every signal measures nearness to the exemplars, so more of it never argues
against a response) and L2-regularised: a signal that only separates the training voices by
accident cannot take a negative weight that flips unseen writers. Fitted with L-BFGS-B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from persrm_core.evidence.signals import SIGNALS


def features(rows: Sequence[dict[str, tuple[float, float]]], signals: Sequence[str] = SIGNALS) -> np.ndarray:
    return np.array([[r[s][0] - r[s][1] for s in signals] for r in rows], dtype=np.float64).reshape(len(rows),
                                                                                                    len(signals))


def fit_combined(rows: Sequence[dict[str, tuple[float, float]]], labels: Sequence[str],
                 weights: Sequence[float] | None = None, l2: float = 0.01,
                 signals: Sequence[str] | None = None) -> dict:
    """Fit on signal rows with labels "A"/"B" (optional per-pair sample weights); only `signals`
    (default: all) may take a weight, the others are held at 0 (still measured and shown)."""
    use = set(SIGNALS if not signals else signals)
    if unknown := use - set(SIGNALS):
        raise ValueError(f"unknown signal(s) {sorted(unknown)}; known: {', '.join(SIGNALS)}")
    from scipy.optimize import minimize

    x = features(rows)
    y = np.array([1.0 if lab == "A" else -1.0 for lab in labels])
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    scales = np.sqrt(np.mean(x * x, axis=0)) + 1e-9  # spread around 0 (the features are antisymmetric)
    z = x / scales

    def loss(beta):
        m = y * (z @ beta)
        lv = np.logaddexp(0, -m)
        grad = -(z * (w * y / (1 + np.exp(m)))[:, None]).sum(axis=0) / w.sum() + 2 * l2 * beta
        return float((w * lv).sum() / w.sum() + l2 * beta @ beta), grad

    res = minimize(loss, np.array([0.5 if s in use else 0.0 for s in SIGNALS]), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None) if s in use else (0.0, 0.0) for s in SIGNALS])
    beta = res.x
    acc = float(np.mean(np.sign(z @ beta) == y)) if len(y) else None
    return {"weights": {s: round(float(b), 6) for s, b in zip(SIGNALS, beta)},
            "scales": {s: float(sc) for s, sc in zip(SIGNALS, scales)},
            "train_pairs": len(y), "train_accuracy": None if acc is None else round(acc, 4)}


def prob_a(model: dict, row: dict[str, tuple[float, float]]) -> float:
    """P(A is the author's) under the fitted `model`."""
    t = sum(model["weights"][s] * (row[s][0] - row[s][1]) / model["scales"][s] for s in SIGNALS)
    return 1.0 / (1.0 + math.exp(-max(min(t, 50.0), -50.0)))


def contributions(model: dict, row: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Each signal's share of the logit (positive = towards A)."""
    return {s: model["weights"][s] * (row[s][0] - row[s][1]) / model["scales"][s] for s in SIGNALS}
