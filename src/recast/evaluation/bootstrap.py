"""Win / loss / tie rates with percentile-bootstrap 95% intervals over prompts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OUTCOMES = ("win", "loss", "tie")


def rates(outcomes: Sequence[str | None]) -> dict[str, float | None]:
    """Percent of the parsed outcomes that are win / loss / tie (unparsed ones are excluded and
    reported on their own); None when nothing was parsed."""
    parsed = [o for o in outcomes if o is not None]
    if not parsed:
        return {k: None for k in OUTCOMES}
    return {k: 100.0 * sum(o == k for o in parsed) / len(parsed) for k in OUTCOMES}


def bootstrap_ci(
    outcomes: Sequence[str | None], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float] | None]:
    """Percentile interval of each rate, resampling prompts with replacement (None when
    nothing was parsed)."""
    parsed = np.array([o for o in outcomes if o is not None])
    if parsed.size == 0:
        return {k: None for k in OUTCOMES}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, parsed.size, size=(n_boot, parsed.size))
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for k in OUTCOMES:
        samples = 100.0 * (parsed[idx] == k).mean(axis=1)
        out[k] = (float(np.percentile(samples, lo)), float(np.percentile(samples, hi)))
    return out


def win_minus_loss(
    outcomes: Sequence[str | None], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float | bool | tuple[float, float] | None]:
    """Win rate minus loss rate (points) over the parsed outcomes, its percentile-bootstrap
    interval over prompts, and whether that interval excludes 0: where it does not, the data
    cannot rank the two systems ("no detectable difference")."""
    parsed = np.array([o for o in outcomes if o is not None])
    score = (parsed == "win").astype(float) - (parsed == "loss").astype(float)
    return mean_difference(score, n_boot, seed, level)


def mean_difference(
    score: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float | bool | tuple[float, float] | None]:
    """The mean of per-item differences in points (each in [-1, 1]: a win − a loss, or a judge's
    hit − the length rule's hit on the same labelled pair), its percentile-bootstrap interval
    resampling items, and whether that interval excludes 0."""
    score = np.asarray(score, dtype=float)
    if score.size == 0:
        return {"value": None, "ci95": None, "excludes_zero": False}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, score.size, size=(n_boot, score.size))
    samples = 100.0 * score[idx].mean(axis=1)
    lo, hi = (
        float(np.percentile(samples, 100 * (1 - level) / 2)),
        float(np.percentile(samples, 100 * (1 + level) / 2)),
    )
    return {
        "value": 100.0 * float(score.mean()),
        "ci95": (lo, hi),
        "excludes_zero": lo > 0 or hi < 0,
    }
