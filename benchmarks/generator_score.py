"""Throughput of the generator's batched `score` against a one-at-a-time loop, same run.

`score` is the CMA-ES fitness call (Eq. 10): every candidate ξ is scored on all of D_es, so
its throughput bounds the search. Measured on the 2-core CPU box (SmolLM2-135M, fp32): a
forward pass is compute-bound, so batching gains little (about 1.2x with a 512-1024 token
budget) and large padded batches lose; batching pays on a GPU and in decoding. Usage:

    python benchmarks/generator_score.py [--n 32] [--batch-size 16] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import resource
import time

from recast.config import GeneratorParams
from recast.data import hh_rlhf
from recast.data.raw import read_records
from recast.generator.local import LocalGenerator
from recast.records import PreferencePair

SAMPLES = "src/recast/data/samples/hh-rlhf/helpful-base-test.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="real (prompt, chosen) pairs to score")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-batch-tokens", type=int, default=None)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()

    pairs = [p for p in hh_rlhf.to_pairs(read_records(SAMPLES)) if isinstance(p, PreferencePair)]
    pairs = pairs[: args.n]
    prompts, targets = [p.prompt for p in pairs], [p.chosen for p in pairs]
    gen = LocalGenerator(
        GeneratorParams(
            model=args.model, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens
        )
    )
    gen.score(prompts[:2], targets[:2])  # warm-up: first-call allocations

    t0 = time.perf_counter()
    batched = gen.score(prompts, targets)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = [gen.score([p], [t])[0] for p, t in zip(prompts, targets, strict=True)]
    t_single = time.perf_counter() - t0

    drift = max(abs(a - b) for a, b in zip(batched, single, strict=True))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model {args.model}, {len(pairs)} real HH-RLHF (prompt, chosen) pairs")
    print(f"one-at-a-time : {len(pairs) / t_single:7.2f} samples/s  ({t_single:.2f} s)")
    print(
        f"batched ({args.batch_size:>3}) : {len(pairs) / t_batched:7.2f} samples/s  "
        f"({t_batched:.2f} s)"
    )
    print(f"speed-up      : {t_single / t_batched:7.2f}x")
    print(f"max |CE batched - CE single| = {drift:.2e} nats; peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
