"""Length-controlled win rate, as AlpacaEval 2 computes it: a logistic model of the judge's
preference with the length difference of the two answers as a covariate, read at a length
difference of zero.

    P(ours preferred) = σ(θ_0 + θ_len · tanh(Δ / sd(Δ))),   Δ = len(ours) − len(other)

The raw win rate mixes "ours answers better" with "ours answers longer"; σ(θ_0) is the win rate
the model predicts for two answers of equal length. A tie counts half a win and half a loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _fit(features: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Weighted logistic regression by Newton's method (a handful of iterations for 2
    parameters); a small ridge keeps it finite when one side wins every pair."""
    theta = np.zeros(features.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-features @ theta))
        grad = features.T @ (w * (p - y)) + l2 * theta
        hess = (features * (w * p * (1 - p))[:, None]).T @ features + l2 * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta


def length_controlled_win_rate(
    outcomes: Sequence[str | None], len_ours: Sequence[float], len_other: Sequence[float]
) -> float | None:
    """Percent of pairs "ours" would win at equal answer lengths (None: nothing parsed)."""
    rows = [
        (o, a - b) for o, a, b in zip(outcomes, len_ours, len_other, strict=True) if o is not None
    ]
    if not rows:
        return None
    delta = np.array([d for _, d in rows], dtype=float)
    sd = delta.std()
    x = np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)
    # a tie is one half-weighted win and one half-weighted loss
    y, xs, w = [], [], []
    for (o, _), xi in zip(rows, x, strict=True):
        for label, weight in ((1.0, {"win": 1.0, "tie": 0.5}.get(o, 0.0)),
                              (0.0, {"loss": 1.0, "tie": 0.5}.get(o, 0.0))):  # fmt: skip
            if weight:
                y.append(label)
                xs.append(xi)
                w.append(weight)
    features = np.column_stack([np.ones(len(xs)), np.array(xs)])
    theta = _fit(features, np.array(y), np.array(w))
    return float(100.0 / (1.0 + np.exp(-theta[0])))
