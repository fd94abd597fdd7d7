"""The warm start ρ_sft: p_im fine-tuned on the teacher's checked rewrites before CMA-ES.

Align-Pro (paper 004) starts its prompter from ρ_sft, a supervised prompter; recast's paper
starts Algorithm 1 from an instruction-tuned LM as is, and a 135M one does not rewrite (issue
12: 0 of 40 untrained SmolLM2 x' are rewrites). ρ_sft here is p_im trained by the CE term of
Eq. 12 alone (ω = 0) with the teacher's x' (recast.refiner.teacher) in the place of x*:

    l_sft = CE(p_im(x), x')        on chat(P_x(x)) [Z_s] z [Z_e] x', the sequence of Eq. 5

so it decodes exactly as the search and training will decode it. With refiner.warm_start the
`search`, `train` and `ablate` stages start from ρ_sft (`start_spec`); False is the paper.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from recast.config import Params
from recast.errors import RecastError
from recast.records import PreferencePair
from recast.refiner.config import RefinerParams
from recast.refiner.model import Refiner
from recast.refiner.teacher import Rewrite, keep, rewrites


def start_spec(rp: RefinerParams) -> str:
    """The refiner Algorithm 1 starts from: ρ_sft with refiner.warm_start, else refiner.model."""
    if not rp.warm_start:
        return rp.model
    path = Path(rp.warm_start_dir) / "refiner"
    if not (path / "config.json").exists():
        raise RecastError(
            f"refiner.warm_start is on but {path} is missing: run `recast warmstart` "
            "(dvc repro warmstart) first, or set refiner.warm_start=false"
        )
    return str(path)


def warm_start(refiner: Refiner, rows: list[Rewrite], rp: RefinerParams) -> list[Any]:
    """Fine-tune `refiner` in place on (x -> x') for each row (l_sft above; refiner.
    warm_start_epochs, warm_start_lr, batch_size); returns the step statistics."""
    from recast.training import finetune

    sft = dataclasses.replace(rp, omega=0.0, epochs=rp.warm_start_epochs, lr=rp.warm_start_lr)
    # finetune reads only x from each pair when ω = 0 (y+ and y- feed q_im's prompt alone)
    pairs = [PreferencePair("teacher", r.x, "", "") for r in rows]
    return finetune(refiner, refiner, pairs, [r.x_prime for r in rows], sft)


def fits(refiner: Refiner, rows: list[Rewrite], max_tokens: int) -> list[Rewrite]:
    """The rows whose x' fits in max_tokens refiner tokens: a target cut short would teach p_im
    to stop mid-query (x' is decoded to at most refiner.max_refined_tokens)."""
    return [
        r
        for r in rows
        if len(
            refiner.tokenizer(refiner.writes(r.x, r.x_prime), add_special_tokens=False)["input_ids"]
        )
        <= max_tokens
    ]


def train_sft(params: Params, pairs: list[PreferencePair]) -> tuple[Refiner, list[Any], Any, int]:
    """ρ_sft: refiner.model fine-tuned by l_sft on the teacher's rewrites of `pairs` that the
    check keeps (refiner.guard) and that fit in refiner.max_refined_tokens. Returns the refiner,
    the step statistics, the check's counts (teacher.Kept) and how many rows it trained on."""
    rp = params.refiner
    kept = keep(rewrites(params, pairs), rp.guard, rp.check_encoder)
    refiner = Refiner.from_params(rp.model, rp)
    rows = fits(refiner, kept.pairs, rp.max_refined_tokens)
    if not rows:
        raise RecastError(
            f"no teacher rewrite of {len(pairs)} queries passed the check and fits in "
            f"{rp.max_refined_tokens} tokens: nothing to warm-start on"
        )
    return refiner, warm_start(refiner, rows, rp), kept, len(rows)
