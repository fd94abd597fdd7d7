"""The DPO baseline (Rafailov et al. 2023) with TRL: the generator itself fine-tuned on the
preference pairs, the white-box comparison the paper's Table 2 reports. recast's method never
touches the generator; this baseline does, to show what access to its weights would buy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.data.stages import METRICS_DIR
from recast.trl_run import save_policy, trainer_args


def dpo_stage(params: Params) -> dict[str, Any]:
    """Fine-tune a copy of the generator with TRL's DPOTrainer; save it under dpo.out_dir/model."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from recast.models.load import load_causal_lm, pick_device
    from recast.runs import load_split

    dp = params.dpo
    pairs = load_split(params, "train")
    pairs = pairs[: dp.train_size] if dp.train_size else pairs
    spec = dp.model or params.generator.model
    device = pick_device(params.generator.device)
    model, tokenizer = load_causal_lm(spec, "float32", device)  # fp32: stable on CPU
    data = Dataset.from_list(
        [  # conversational: TRL applies the model's chat template, as the generator does
            {
                "prompt": [{"role": "user", "content": p.prompt}],
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
    )
    out = Path(dp.out_dir)
    args = DPOConfig(
        beta=dp.beta,
        learning_rate=dp.lr,
        num_train_epochs=dp.epochs,
        per_device_train_batch_size=dp.batch_size,
        max_length=dp.max_length,
        **trainer_args(out, dp.seed, device),
    )
    t0 = time.perf_counter()
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    seconds = time.perf_counter() - t0
    logs = [row for row in save_policy(trainer, tokenizer, out) if "loss" in row]
    metrics = {
        "pairs": len(pairs),
        "steps": len(logs),
        "first_loss": logs[0]["loss"] if logs else None,
        "final_loss": logs[-1]["loss"] if logs else None,
        "final_reward_accuracy": logs[-1].get("rewards/accuracies") if logs else None,
        "final_reward_margin": logs[-1].get("rewards/margins") if logs else None,
        "seconds": seconds,
    }
    io.write_json(out / "log.json", logs)
    io.write_json(METRICS_DIR / "dpo.json", metrics)
    return metrics
