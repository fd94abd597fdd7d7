"""The BPO baseline (Cheng et al. 2023, "Black-Box Prompt Optimization"), built BPO's way from
the preference data: a teacher LLM compares the better and the worse answer to each query and
writes an optimized query that would elicit the better one; a small LM is fine-tuned (TRL SFT)
to map a query to its optimized form. At evaluation the generator answers the optimized query.

Like recast it rewrites the input of a frozen generator; unlike recast it is trained on what a
teacher says, not on what the generator does with the rewrite."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from recast import io
from recast.config import Params
from recast.data.stages import METRICS_DIR
from recast.generator import make_generator
from recast.generator.base import Sampling
from recast.trl_run import save_policy, trainer_args

TEACHER = (
    "Here is a user's instruction, a bad response and a good response to it.\n\n"
    "[Instruction]\n{prompt}\n\n[Bad response]\n{bad}\n\n[Good response]\n{good}\n\n"
    "Compare the two responses and work out what the user really needs. Then rewrite the "
    "instruction so that an assistant would give the good response: keep its intent, and add "
    "the details, constraints and format the good response satisfies. Reply with the "
    "rewritten instruction only."
)
OPTIMIZE = "Rewrite this instruction so that an AI assistant answers it well:\n\n{prompt}"
SCHEMA = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("optimized", pa.string())])
_SECTION = re.compile(r"^\s*\[(instruction|bad response|good response)\]\s*$", re.I | re.M)


def extract_rewrite(reply: str) -> str:
    """The rewritten instruction in a teacher's reply. A small teacher often wraps it in a
    preamble ("Here is the rewritten instruction:"), repeats the prompt's [Instruction] header,
    and runs on into a [Good response] section; the optimizer must learn the instruction alone."""
    sections = list(_SECTION.finditer(reply))
    heads = [m for m in sections if m.group(1).lower() == "instruction"]
    if heads:  # the text under the last [Instruction] header, up to the next header
        start = heads[-1].end()
        after = [m.start() for m in sections if m.start() >= start]
        reply = reply[start : after[0] if after else len(reply)]
    elif sections:  # no [Instruction] header: what comes before the first response section
        reply = reply[: sections[0].start()]
    reply = reply.strip()
    if len(reply) > 1 and reply[0] == reply[-1] == '"':  # quoted as a whole
        reply = reply[1:-1].strip()
    return reply


def bpo_stage(params: Params) -> dict[str, Any]:
    """Optimized queries from the teacher, then the optimizer fine-tuned on them."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from recast.models.load import load_causal_lm, pick_device
    from recast.runs import load_split

    bp = params.bpo
    pairs = load_split(params, "train")
    pairs = pairs[: bp.train_size] if bp.train_size else pairs
    teacher = make_generator(
        dataclasses.replace(
            params.generator,
            backend=bp.teacher_backend,
            model=bp.teacher,
            endpoints=list(bp.teacher_endpoints),
            dtype="auto",
        )
    )
    t0 = time.perf_counter()
    try:
        written = teacher.generate(
            [TEACHER.format(prompt=p.prompt, bad=p.rejected, good=p.chosen) for p in pairs],
            Sampling(max_new_tokens=bp.max_new_tokens, temperature=0.0),
        )
    finally:
        teacher.close()
    teacher_seconds = time.perf_counter() - t0
    rewrites = [extract_rewrite(w) for w in written]
    # an empty rewrite, or the query itself, teaches nothing: keep the rest, count the drops
    kept = [(p, w) for p, w in zip(pairs, rewrites, strict=True) if w and w != p.prompt]
    out = Path(bp.out_dir)
    rows = [{"id": p.id, "prompt": p.prompt, "optimized": w} for p, w in kept]
    io.write_parquet(out / "pairs.parquet", pa.Table.from_pylist(rows, SCHEMA))
    if not kept:
        from recast.errors import RecastError

        raise RecastError(f"the BPO teacher {bp.teacher} wrote no usable optimized query")

    device = pick_device(params.generator.device)
    model, tokenizer = load_causal_lm(bp.model, "float32", device)
    data = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": OPTIMIZE.format(prompt=p.prompt)}],
                "completion": [{"role": "assistant", "content": w}],
            }
            for p, w in kept
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
        "optimized_kept": len(kept),
        "optimized_unwrapped": sum(w != r.strip() for w, r in zip(rewrites, written, strict=True)),
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
