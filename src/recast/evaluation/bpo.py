"""The BPO baseline (Cheng et al. 2023, "Black-Box Prompt Optimization"), built BPO's way from
the preference data: a teacher LLM compares the better and the worse answer to each query and
writes an optimized query that would elicit the better one; a small LM is fine-tuned (TRL SFT)
to map a query to its optimized form. At evaluation the generator answers the optimized query.

Like recast it rewrites the input of a frozen generator; unlike recast it is trained on what a
teacher says, not on what the generator does with the rewrite."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from recast import io
from recast.config import Params
from recast.data.stages import METRICS_DIR
from recast.generator import make_generator
from recast.generator.base import Sampling
from recast.refiner.teacher import TEACHER, extract_rewrite, keep, rewrites
from recast.trl_run import save_policy, trainer_args

__all__ = ["OPTIMIZE", "TEACHER", "bpo_stage", "extract_rewrite", "optimize"]

OPTIMIZE = "Rewrite this instruction so that an AI assistant answers it well:\n\n{prompt}"
SCHEMA = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("optimized", pa.string())])


def bpo_stage(params: Params) -> dict[str, Any]:
    """Optimized queries from the teacher (recast.refiner.teacher, shared with the refiner's
    warm start), those the check keeps (refiner.guard), then the optimizer fine-tuned on them;
    the metrics count the teacher's x' per verdict and the dropped ones."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from recast.models.load import load_causal_lm, pick_device
    from recast.runs import load_split

    bp, rp = params.bpo, params.refiner
    pairs = load_split(params, "train")
    pairs = pairs[: bp.train_size] if bp.train_size else pairs
    t0 = time.perf_counter()
    # the teacher's rewrites are the `rewrites` stage's (shared with the refiner's warm start);
    # run here only when that file does not hold these pairs
    written = rewrites(params, pairs)
    teacher_seconds = time.perf_counter() - t0
    # with the guard, a teacher x' that the check does not call a rewrite (a copy, an answer
    # pasted from y+, a drift) is dropped: BPO would learn to answer instead of rewriting
    kept = keep(written, rp.guard, rp.check_encoder)
    out = Path(bp.out_dir)
    rows = [{"id": r.id, "prompt": r.x, "optimized": r.x_prime} for r in kept.pairs]
    io.write_parquet(out / "pairs.parquet", pa.Table.from_pylist(rows, SCHEMA))
    if not kept.pairs:
        from recast.errors import RecastError

        raise RecastError(
            f"the BPO teacher {bp.teacher} wrote no usable optimized query "
            f"(check verdicts: {dict(kept.verdicts)})"
        )

    device = pick_device(params.generator.device)
    model, tokenizer = load_causal_lm(bp.model, "float32", device)
    data = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": OPTIMIZE.format(prompt=r.x)}],
                "completion": [{"role": "assistant", "content": r.x_prime}],
            }
            for r in kept.pairs
        ]
    )
    args = SFTConfig(
        learning_rate=bp.lr,
        num_train_epochs=bp.epochs,
        per_device_train_batch_size=bp.batch_size,
        max_length=bp.max_length,
        **trainer_args(out, bp.seed, device),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    logs = [row for row in save_policy(trainer, tokenizer, out) if "loss" in row]
    metrics = {
        "pairs": len(pairs),
        "optimized_kept": len(kept.pairs),
        "optimized_unwrapped": sum(r.x_prime != r.raw.strip() for r in written),
        "guard": rp.guard,
        **kept.metrics(),
        "teacher": bp.teacher,
        "teacher_seconds": teacher_seconds,
        "first_loss": logs[0]["loss"] if logs else None,
        "final_loss": logs[-1]["loss"] if logs else None,
        "seconds": time.perf_counter() - t0,
    }
    io.write_json(out / "log.json", logs)
    io.write_json(METRICS_DIR / "bpo.json", metrics)
    return metrics


def optimize(params: Params, questions: list[str]) -> list[str]:
    """BPO(x) for each query, greedy; an empty output falls back to the query itself."""
    path = Path(params.bpo.out_dir) / "model"
    if not (path / "config.json").exists():
        from recast.errors import RecastError

        raise RecastError(f"no BPO optimizer at {path}: run `recast bpo` first")
    optimizer = make_generator(
        dataclasses.replace(params.generator, backend="local", model=str(path), dtype="float32")
    )
    try:
        out = optimizer.generate(
            [OPTIMIZE.format(prompt=q) for q in questions],
            Sampling(max_new_tokens=params.bpo.max_new_tokens, temperature=0.0),
        )
    finally:
        optimizer.close()
    return [o or q for o, q in zip(out, questions, strict=True)]
