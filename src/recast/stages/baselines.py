"""The stages that train what the evaluation compares against or scores with: `reward` (the
Bradley-Terry reward model r_ω), `bpo` (the BPO optimizer) and `dpo` (the DPO-tuned
generator). Each reads D, calls the library (recast.evaluation.reward, .bpo, .dpo), writes
the model and its log, and metrics/<stage>.json."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recast import io
from recast.config import Params
from recast.errors import RecastError
from recast.evaluation import bpo as bpo_lib
from recast.evaluation import dpo as dpo_lib
from recast.evaluation.reward import (
    RewardModel,
    pairwise_accuracy,
    prefers_longer,
    train_head,
    train_reward,
)
from recast.refiner import teacher
from recast.stages.common import load_split, write_metrics

Log = Callable[[str], None]
"""Progress lines, for the CLI's status."""


def reward(params: Params, log: Log = lambda _: None) -> dict[str, Any]:
    """Stage `reward`: train r_ω on D (Eq. 4 of the survey: the Bradley-Terry loss); its
    pairwise accuracy on the held-out dev split."""
    rp = params.reward
    train, dev = load_split(params, "train"), load_split(params, "dev")
    train = train[: rp.train_size] if rp.train_size else train
    log(f"reward model: {rp.encoder} + scalar head on {len(train)} pairs")
    model = RewardModel.from_encoder(rp.encoder, rp.max_length, rp.length_nuisance, rp.seed)
    start = time.perf_counter()
    if rp.train_encoder:
        losses = train_reward(model, train, rp.epochs, rp.lr, rp.batch_size, rp.seed)
    else:  # frozen encoder: seconds_per_100_steps below includes the one-off feature pass
        losses = train_head(model, train, rp.head_epochs, rp.head_lr, rp.batch_size, rp.seed)
    seconds = time.perf_counter() - start
    out = Path(rp.out_dir)
    model.save(out / "model")
    metrics = {
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "final_loss": float(np.mean(losses[-10:])),
        "steps": len(losses),
        "length_coef": float(model.beta),
        "train_accuracy": pairwise_accuracy(model, train[:256]),
        "dev_accuracy": pairwise_accuracy(model, dev),
        "dev_prefers_longer": prefers_longer(model, dev),
    }
    io.write_json(out / "losses.json", losses)
    run = {"seconds_per_100_steps": 100 * seconds / max(len(losses), 1), "train_seconds": seconds}
    return write_metrics("reward", metrics, run=run)


def bpo(params: Params) -> dict[str, Any]:
    """Stage `bpo`: the teacher's optimized queries (the `rewrites` stage's file, shared with
    the refiner's warm start), those the check keeps (refiner.guard), then the optimizer
    fine-tuned on them; the metrics count the teacher's x' per verdict and the dropped ones."""
    bp, rp = params.bpo, params.refiner
    pairs = teacher.teacher_queries(load_split(params, "train"), bp.train_size)
    t0 = time.perf_counter()
    # run here only when bpo.rewrites does not hold these pairs
    written = teacher.rewrites(params, pairs)
    teacher_seconds = time.perf_counter() - t0
    # with the guard, a teacher x' that the check does not call a rewrite (a copy, an answer
    # pasted from y+, a drift) is dropped: BPO would learn to answer instead of rewriting
    kept = teacher.keep(written, rp.guard, rp.check_encoder)
    out = Path(bp.out_dir)
    io.write_parquet(out / "pairs.parquet", bpo_lib.kept_table(kept.pairs))
    if not kept.pairs:
        raise RecastError(
            f"the BPO teacher {bp.teacher} wrote no usable optimized query "
            f"(check verdicts: {dict(kept.verdicts)})"
        )
    logs = bpo_lib.fit(bp, params.generator.device, kept.pairs, out)
    metrics = {
        "pairs": len(pairs),
        "optimized_kept": len(kept.pairs),
        "optimized_unwrapped": sum(r.x_prime != r.raw.strip() for r in written),
        "guard": rp.guard,
        **kept.metrics(),
        "teacher": bp.teacher,
        "first_loss": logs[0]["loss"] if logs else None,
        "final_loss": logs[-1]["loss"] if logs else None,
    }
    io.write_json(out / "log.json", logs)
    run = {"teacher_seconds": teacher_seconds, "seconds": time.perf_counter() - t0}
    return write_metrics("bpo", metrics, run=run)


def dpo(params: Params) -> dict[str, Any]:
    """Stage `dpo`: a copy of the generator fine-tuned with TRL's DPO on D, under
    dpo.out_dir/model (the white-box baseline of Table 2)."""
    dp = params.dpo
    pairs = load_split(params, "train")
    pairs = pairs[: dp.train_size] if dp.train_size else pairs
    out = Path(dp.out_dir)
    t0 = time.perf_counter()
    logs = dpo_lib.fit(dp, params.generator, pairs, out)
    seconds = time.perf_counter() - t0
    metrics = {
        "pairs": len(pairs),
        "steps": len(logs),
        "first_loss": logs[0]["loss"] if logs else None,
        "final_loss": logs[-1]["loss"] if logs else None,
        "final_reward_accuracy": logs[-1].get("rewards/accuracies") if logs else None,
        "final_reward_margin": logs[-1].get("rewards/margins") if logs else None,
    }
    io.write_json(out / "log.json", logs)
    return write_metrics("dpo", metrics, run={"seconds": seconds})
