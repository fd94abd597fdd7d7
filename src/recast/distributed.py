"""Fan-out of a CMA-ES population past one machine: each candidate ξ's F(ξ) (Eq. 11) becomes one
job that any worker process can run, given only picklable inputs.

The search process maps ξ to its latent embeddings (Eq. 9) itself, so a worker needs no
search space: it loads the refiner from disk and the generator from params once per process,
and scores x' decoded with those embeddings. `map_fn` is whatever spreads the jobs (Prefect
task mapping onto Dask or Ray, see tasks/refiner.py); this module does not know about it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recast import io
from recast.config import Params
from recast.errors import RecastError
from recast.records import PreferencePair
from recast.search import Space
from recast.tracking import params_hash

_FITNESS: dict[str, object] = {}  # one loaded refiner + generator per worker process
_SERVED = {"candidates": 0}


@dataclass(frozen=True)
class CandidateJob:
    """What a worker needs besides the candidate's embeddings."""

    params: Params
    refiner: str
    """Where the refiner being searched lives on disk (a round's saved folder, or a spec)."""
    pairs: tuple[PreferencePair, ...]
    """D_es (or dev): the pairs F averages over."""

    def key(self) -> str:
        ids = "|".join(p.id for p in self.pairs)
        return io.digest_bytes(f"{self.refiner}|{params_hash(self.params)}|{ids}".encode())


MapFn = Callable[[CandidateJob, list[np.ndarray]], list[float]]
"""Runs candidate_fitness(job, e) for each e, anywhere, and returns the values in order."""


def candidate_fitness(job: CandidateJob, e: np.ndarray) -> float:
    """F for one candidate whose [Z_s], [Z_e] embeddings are e (2, d): runs in a worker."""
    from recast.generator import make_generator
    from recast.refiner.model import Refiner
    from recast.refiner.refine import Guard
    from recast.search import Fitness

    key = job.key()
    if key not in _FITNESS:
        _FITNESS.clear()  # a new round or search: free the previous refiner
        p = job.params
        refiner = Refiner.from_params(job.refiner, p.refiner)
        generator = make_generator(p.generator)
        # the same guard as an in-process search (its verdict counts stay in this worker)
        _FITNESS[key] = Fitness(
            refiner,
            generator,
            list(job.pairs),
            None,
            p.cmaes,
            p.refiner.max_refined_tokens,
            Guard.from_params(p.refiner),
        )
    fitness = _FITNESS[key]
    embedding = torch.as_tensor(e, dtype=fitness.refiner.embedding.weight.dtype)
    (value,) = fitness.score_embeddings(embedding.to(fitness.refiner.device)[None])
    _SERVED["candidates"] += 1
    return value


def served() -> tuple[int, int]:
    """(pid, candidates scored by this process): lets a test see which workers did the work."""
    return os.getpid(), _SERVED["candidates"]


Evaluate = Callable[[list[np.ndarray]], list[float]]


def population_evaluator(
    params: Params, refiner: str | None, pairs: list[PreferencePair], map_fn: MapFn
) -> Callable[[Space], Evaluate]:
    """For run_search: given the search's Space, a population -> [F(ξ)] that fans out.
    `refiner` is the searched refiner's folder: workers load those exact weights."""
    if refiner is None:
        raise RecastError("the refiner has unsaved weights: workers cannot load it to search")

    def for_space(space: Space) -> Evaluate:
        job = CandidateJob(params, refiner, tuple(pairs))

        def evaluate(xis: list[np.ndarray]) -> list[float]:
            e = space.embeddings(np.stack(xis)).detach().cpu().float().numpy()
            return [float(v) for v in map_fn(job, list(e))]

        return evaluate

    return for_space
