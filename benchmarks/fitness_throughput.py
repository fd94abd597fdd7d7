"""CMA-ES fitness throughput: candidate·sample evaluations per second of the batched path
(`recast.search.Fitness`) against a one-at-a-time loop over the same models, in the same run.

One evaluation = decode x' = p_im(x; ξ) and score CE(f(x'), y). The batched path shares each
query's prefix cache across candidates, decodes candidates × samples together and never scores
an (x', y) twice; the loop encodes, decodes and scores one (ξ, x) at a time. Both see the same
population (one CMA-ES `ask`) and must produce the same fitness values.

    python benchmarks/fitness_throughput.py [--samples 8] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from recast.config import CmaesParams, GeneratorParams
from recast.data import hh_rlhf
from recast.data.raw import read_records
from recast.generator.local import LocalGenerator
from recast.records import PreferencePair
from recast.refiner.model import Refiner
from recast.refiner.prompts import p_x
from recast.search import Fitness, make_space

SAMPLES = "src/recast/data/samples/hh-rlhf/helpful-base-test.jsonl.gz"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=8, help="|D_es|: real HH-RLHF pairs")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="refiner and generator")
    ap.add_argument("--refined-tokens", type=int, default=32)
    args = ap.parse_args()

    pairs = [p for p in hh_rlhf.to_pairs(read_records(SAMPLES)) if isinstance(p, PreferencePair)]
    pairs = pairs[: args.samples]
    params = CmaesParams(delta_sigma=0.2, max_target_tokens=64)
    refiner = Refiner.load(args.model)
    generator = LocalGenerator(GeneratorParams(model=args.model))
    space = make_space(refiner, pairs, params)
    rng = np.random.default_rng(0)
    xis = [space.sigma0 * rng.standard_normal(2 * params.d_z) for _ in range(space.popsize)]
    n = len(xis) * len(pairs)
    print(
        f"{args.model} as refiner and generator; λ = {len(xis)} candidates × "
        f"|D_es| = {len(pairs)} real pairs = {n} evaluations; peak RSS {peak_mb():.0f} MB"
    )

    t0 = time.perf_counter()
    fitness = Fitness(refiner, generator, pairs, space, params, args.refined_tokens)
    batched = fitness(xis)
    t_batched = time.perf_counter() - t0
    unique = len(fitness.cache)
    mem_batched = peak_mb()

    t0 = time.perf_counter()
    single = []
    embeds = space.embeddings(np.stack(xis))
    with torch.inference_mode():
        for c in range(len(xis)):
            ces = []
            for pair, target in zip(pairs, fitness.targets, strict=True):
                prefix = refiner.encode_prefix([p_x(pair.prompt)])
                (x_refined,) = refiner.decode(prefix, embeds[c], args.refined_tokens)
                ces.append(generator.score([x_refined], [target])[0])
            single.append(float(np.mean(ces)))
    t_single = time.perf_counter() - t0

    drift = max(abs(a - b) for a, b in zip(batched, single, strict=True))
    print(f"one-at-a-time : {n / t_single:7.2f} evaluations/s  ({t_single:6.1f} s)")
    print(
        f"batched       : {n / t_batched:7.2f} evaluations/s  ({t_batched:6.1f} s, prefix "
        f"cache included; {unique} distinct (x', y) scored of {n})"
    )
    print(f"speed-up      : {t_single / t_batched:7.2f}x   (target: 8x)")
    print(
        f"max |F batched - F loop| = {drift:.2e} nats; peak RSS after batched "
        f"{mem_batched:.0f} MB, after loop {peak_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
