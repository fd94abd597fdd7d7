"""Deterministic splits: dev (held out), D (refiner training) and D_es ⊂ D (CMA-ES fitness)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from recast import io
from recast.data.config import SplitParams
from recast.errors import DataError, RecastError
from recast.records import PreferencePair, pairs_from_table


def split_pairs(
    pairs: list[PreferencePair], params: SplitParams
) -> dict[str, list[PreferencePair]]:
    """{'train': D, 'es': D_es, 'dev': dev}. Sorted by id before the seeded shuffle, so the
    split depends only on the content and the seed, never on file or source order."""
    if not 0 < params.dev_fraction < 1:
        raise DataError(f"split.dev_fraction must be in (0, 1), got {params.dev_fraction}")
    ordered = sorted(pairs, key=lambda p: p.id)
    perm = np.random.default_rng(params.seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    n_dev = math.ceil(len(shuffled) * params.dev_fraction)
    dev, train = shuffled[:n_dev], shuffled[n_dev:]
    if len(train) < params.es_size or params.es_size < 1:
        raise DataError(
            f"D has {len(train)} pairs, too few for a CMA-ES subset of split.es_size="
            f"{params.es_size} (it must be 1..{len(train)}): lower split.es_size or add data"
        )
    return {"train": train, "es": train[: params.es_size], "dev": dev}


def split_path(params: SplitParams, name: str) -> Path:
    """<split.out_dir>/<name>.parquet: D (train), D_es (es), dev."""
    return Path(params.out_dir) / f"{name}.parquet"


def read_split(params: SplitParams, name: str) -> list[PreferencePair]:
    """The preference pairs of one split; a clear error if the split stage has not run."""
    path = split_path(params, name)
    if not path.exists():
        raise RecastError(f"{path} is missing: run `dvc repro split` or `recast data build` first")
    return pairs_from_table(io.read_parquet(path))
