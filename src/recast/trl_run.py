"""What every TRL trainer run in recast shares (DPO, BPO's SFT, Align-Pro's GRPO): quiet,
checkpoint-free arguments, and the trained policy saved whole under out/model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from recast import io


def trainer_args(out: Path, seed: int, device: str) -> dict[str, Any]:
    """TrainingArguments shared by recast's TRL configs: log every step, no intermediate
    checkpoints (a stage reruns whole), no reporting integrations, fp32 on CPU."""
    return {
        "output_dir": str(out / "trainer"),
        "seed": seed,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": device == "cpu",
        "bf16": False,
        "disable_tqdm": True,
        # TRL turns it on to save accelerator memory; at these model sizes it only recomputes
        # activations (4 GRPO steps with their loads: 69.9 s with it, 59.2 s without, on a
        # 2-core CPU; in the pipeline a step 17.2 -> 16.2 s, BPO's SFT 143 -> 109 s); the
        # weights are the same bit for bit
        "gradient_checkpointing": False,
    }


def save_policy(trainer: Any, tokenizer: Any, out: Path) -> list[dict[str, Any]]:
    """Save the trained model to out/model, drop the trainer's scratch folder, and return its
    log rows (one per logged step)."""
    io.save_pretrained(trainer.model, tokenizer, out / "model")
    shutil.rmtree(out / "trainer", ignore_errors=True)
    return list(trainer.state.log_history)
