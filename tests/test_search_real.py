"""The search on the packaged SmolLM2 (refiner and generator) over real HH-RLHF pairs: CMA-ES
must find a ξ whose fitness beats the starting point ξ = 0. (`make run` measures the same on
D_es and the dev split at the embedded sizes; see metrics/search.json.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_search import real_pairs

from recast.config import CmaesParams, GeneratorParams, load_params
from recast.generator.local import LocalGenerator
from recast.refiner.model import Refiner
from recast.search import run_search
from recast.training import dev_fitness


def test_cmaes_lowers_the_fitness_on_real_models(smollm2: str, tmp_path: Path) -> None:
    pairs = real_pairs(16)
    es, dev = pairs[:8], pairs[8:]
    params = CmaesParams(iterations=4, delta_sigma=0.2, max_target_tokens=32)
    refiner = Refiner.load(smollm2)
    generator = LocalGenerator(GeneratorParams(model=smollm2))
    result, space = run_search(refiner, generator, es, params, tmp_path, 16)
    assert result.best_fitness < result.fitness_at_zero
    p = load_params(None, ["cmaes.max_target_tokens=32", "refiner.max_refined_tokens=16"])
    dev_scores = dev_fitness(refiner, generator, dev, space, p, np.asarray(result.xi_star))
    print(
        f"D_es: F(0) {result.fitness_at_zero:.4f} -> F(ξ*) {result.best_fitness:.4f}; "
        f"dev: {dev_scores}"
    )
    assert all(np.isfinite(list(dev_scores.values())))
