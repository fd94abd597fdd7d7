"""The `cmaes` params section, beside recast.search (the CMA-ES search for ξ*).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CmaesParams:
    """The CMA-ES search for ξ* (Eq. 9-11, 13-14; Table 5, 'CMA-ES' column)."""

    enabled: bool = True
    """False is Table 3's ablation: no search, pseudo-labels from the unbiased refiner."""
    d_z: int = 16
    """d_z, the evolution dimension per token; ξ ∈ R^{2·d_z} (Table 5: 16)."""
    iterations: int = 30
    """CMA-ES iterations (Table 5: 30)."""
    popsize: int | str = "paper"
    """λ: 'paper' (4 + ln 2d_z, §4), 'pycma' (4 + 3 ln 2d_z), or an integer ≥ 2."""
    delta_sigma: float = 0.001
    """δ(σ(g)) of Eq. 14, which sets the initial step size (the paper: 0.001)."""
    alpha: float = 1.0
    """α of Eq. 13 as a fraction of the special token's embedding norm (see bias.alphas)."""
    stop_on_flat_fitness: bool = True
    """Keep pycma's tolfun / flat-fitness stops (every candidate scoring the same ends the
    search early); False runs all `iterations` (the paper's stop criterion)."""
    max_target_tokens: int = 128
    """y is scored on at most this many tokens (Table 5: n_g = 128)."""
    batch_rows: int = 64
    """Most (candidate, sample) rows decoded together."""
    seed: int = 0
    """Seed of the projections A_i and of CMA-ES."""
    out_dir: str = "runs/search"
    """Round 1's search: checkpoint, ξ*, fitness curve (later rounds live under refiner.out_dir)."""
