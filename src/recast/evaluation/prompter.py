"""The Align-Pro prompter ρ at inference (paper 004): x' ~ ρ(·|x) with its paper's evaluation
sampling. The evaluation (system "alignpro"), the promotion gate and the training
(recast.alignpro) all rewrite through here, so the evaluation need not import the trainer."""

from __future__ import annotations

import dataclasses

from recast.alignpro_config import PrompterParams
from recast.generator import make_generator
from recast.generator.base import Sampling
from recast.generator.config import GeneratorParams

PROMPTER = (
    "Rewrite the user's query below so that an AI assistant gives the most helpful, accurate "
    "and complete answer. Keep its meaning. Reply with the rewritten query only.\n\n"
    "Query: {query}"
)


def eval_sampling(pp: PrompterParams) -> Sampling:
    """The paper's sampling for evaluation responses: temperature 1.5, top-p 0.6, top-k 20."""
    return Sampling(
        max_new_tokens=pp.answer_tokens,
        temperature=pp.eval_temperature,
        top_p=pp.eval_top_p,
        top_k=pp.eval_top_k,
        seed=pp.seed,
    )


def rewrite(
    pp: PrompterParams, generator: GeneratorParams, spec: str, queries: list[str]
) -> list[str]:
    """x' ~ ρ(·|x) with the evaluation sampling; ρ is the prompter at `spec` (a folder or a
    registry URI), run locally in float32 with the generator section's other settings."""
    prompter = make_generator(
        dataclasses.replace(generator, backend="local", model=spec, dtype="float32")
    )
    try:
        sampling = dataclasses.replace(eval_sampling(pp), max_new_tokens=pp.max_new_tokens)
        return prompter.generate([PROMPTER.format(query=q) for q in queries], sampling)
    finally:
        prompter.close()
