"""The DPO baseline (Rafailov et al. 2023) with TRL: the generator itself fine-tuned on the
preference pairs, the white-box comparison the paper's Table 2 reports. recast's method never
touches the generator; this baseline does, to show what access to its weights would buy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recast.evaluation.config import DpoParams
from recast.generator.config import GeneratorParams
from recast.records import PreferencePair
from recast.trl_run import save_policy, trainer_args


def fit(
    dp: DpoParams, generator: GeneratorParams, pairs: list[PreferencePair], out: Path
) -> list[dict[str, Any]]:
    """Fine-tune a copy of the generator (dpo.model, default generator.model) with TRL's
    DPOTrainer on the pairs; saved under out/model. Returns TRL's log rows with a loss."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from recast.models.load import load_causal_lm, pick_device

    spec = dp.model or generator.model
    device = pick_device(generator.device)
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
    args = DPOConfig(
        beta=dp.beta,
        learning_rate=dp.lr,
        num_train_epochs=dp.epochs,
        per_device_train_batch_size=dp.batch_size,
        max_length=dp.max_length,
        **trainer_args(out, dp.seed, device),
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return [row for row in save_policy(trainer, tokenizer, out) if "loss" in row]
