"""The answer cache: each system's answers to a set are written as soon as they exist, keyed
by every input that made them, so a killed evaluation resumes without regenerating them and a
changed input (a retrained model, other sampling) makes them afresh."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from recast import io
from recast.config import Params
from recast.evaluation import systems
from recast.evaluation.config import EvaluateParams
from recast.evaluation.systems import Answers, Context
from recast.records import EvalPrompt

# evaluate.* keys that change what is judged or reported, never an answer
_NOT_ANSWER_INPUTS = ("judge", "agreement", "n_boot", "out_dir", "sets", "max_prompts", "systems")


def key(params: Params, name: str, prompts: list[EvalPrompt]) -> str:
    """What a system's answers depend on: rerun only when one of these changes."""
    parts = {
        "system": name,
        "prompts": [p.id for p in prompts],
        "generator": dataclasses.asdict(params.generator),
        "evaluate": {
            k: v
            for k, v in dataclasses.asdict(params.evaluate).items()
            if not k.startswith(_NOT_ANSWER_INPUTS)
        },
        "sampling": dataclasses.asdict(params.sampling),
        **systems.get(name).key_parts(params, name),
    }
    return io.digest(parts)


def path(ev: EvaluateParams, set_name: str, name: str) -> Path:
    """<evaluate.out_dir>/answers/<set>/<system>.json"""
    return Path(ev.out_dir) / "answers" / set_name / f"{name}.json"


def answer(
    ctx: Context, set_name: str, name: str, prompts: list[EvalPrompt], log: Callable[[str], None]
) -> Answers:
    """System `name`'s answers to the set's prompts: from the cache when its key matches,
    else made now (systems.SYSTEMS) and written at once."""
    k = key(ctx.params, name, prompts)
    file = path(ctx.params.evaluate, set_name, name)
    if file.exists() and io.read_json(file).get("key") == k:
        log(f"{set_name}/{name}: answers from an earlier run ({file})")
        return Answers(**io.read_json(file)["answers"])
    log(f"{set_name}/{name}: answering {len(prompts)} prompts")
    made = systems.get(name).answer(ctx, [p.prompt for p in prompts])
    io.write_json(file, {"key": k, "answers": dataclasses.asdict(made)})
    return made
