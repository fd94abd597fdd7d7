"""The BPO baseline (Cheng et al. 2023, "Black-Box Prompt Optimization"), built BPO's way from
the preference data: a teacher LLM compares the better and the worse answer to each query and
writes an optimized query that would elicit the better one; a small LM is fine-tuned (TRL SFT)
to map a query to its optimized form. At evaluation the generator answers the optimized query.

Like recast it rewrites the input of a frozen generator; unlike recast it is trained on what a
teacher says, not on what the generator does with the rewrite."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa

from recast.evaluation.config import BpoParams
from recast.generator import make_generator
from recast.generator.base import Sampling
from recast.generator.config import GeneratorParams
from recast.refiner.teacher import TEACHER, Rewrite, extract_rewrite
from recast.trl_run import save_policy, trainer_args

__all__ = ["OPTIMIZE", "TEACHER", "extract_rewrite", "fit", "kept_table", "optimize"]

OPTIMIZE = "Rewrite this instruction so that an AI assistant answers it well:\n\n{prompt}"
SCHEMA = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("optimized", pa.string())])


def fit(bp: BpoParams, device: str, kept: list[Rewrite], out: Path) -> list[dict[str, Any]]:
    """Fine-tune bpo.model (TRL SFT) on `device` (generator.device) to map x to the teacher's
    kept x'; the optimizer is saved to out/model. Returns TRL's log rows with a loss."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from recast.models.load import load_causal_lm, pick_device

    device = pick_device(device)
    model, tokenizer = load_causal_lm(bp.model, "float32", device)
    data = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": OPTIMIZE.format(prompt=r.x)}],
                "completion": [{"role": "assistant", "content": r.x_prime}],
            }
            for r in kept
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
    return [row for row in save_policy(trainer, tokenizer, out) if "loss" in row]


def kept_table(kept: list[Rewrite]) -> pa.Table:
    """The optimizer's training data, as written to bpo.out_dir/pairs.parquet."""
    rows = [{"id": r.id, "prompt": r.x, "optimized": r.x_prime} for r in kept]
    return pa.Table.from_pylist(rows, SCHEMA)


def optimize(bp: BpoParams, generator: GeneratorParams, questions: list[str]) -> list[str]:
    """BPO(x) for each query, greedy, by the optimizer under bpo.out_dir run locally with the
    generator section's other settings; an empty output falls back to the query itself."""
    path = Path(bp.out_dir) / "model"
    if not (path / "config.json").exists():
        from recast.errors import RecastError

        raise RecastError(f"no BPO optimizer at {path}: run `recast bpo` first")
    optimizer = make_generator(
        dataclasses.replace(generator, backend="local", model=str(path), dtype="float32")
    )
    try:
        out = optimizer.generate(
            [OPTIMIZE.format(prompt=q) for q in questions],
            Sampling(max_new_tokens=bp.max_new_tokens, temperature=0.0),
        )
    finally:
        optimizer.close()
    return [o or q for o, q in zip(out, questions, strict=True)]
