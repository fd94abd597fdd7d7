"""The evaluation (Tables 2-3): every system's answers to every set (recast.evaluation.systems,
cached by recast.evaluation.answers), their rewards r_ω(x, y), and the judge's verdicts on
"ours vs X" (recast.evaluation.judging), gathered into results (recast.evaluation.results).

It works set by set (evaluate_set), so that the sets can fan out over a cluster (`map_sets`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.errors import RecastError
from recast.evaluation import answers, judging, results
from recast.evaluation.judging import JudgeType, judge_from, judge_name
from recast.evaluation.results import SetResult
from recast.evaluation.reward import RewardModel, trained_dir
from recast.evaluation.systems import Context
from recast.generator import make_generator
from recast.generator.base import Generator
from recast.records import EvalPrompt

Log = Callable[[str], None]

MapSets = Callable[[Params, list[str]], list[SetResult]]
"""Runs evaluate_set(params, s) for each set s, anywhere, and returns the results in order."""


def _quiet(_: str) -> None:
    pass


def eval_prompts(params: Params, set_name: str | None = None) -> list[EvalPrompt]:
    """The evaluation prompts of one set (or of every set in params, in order), capped at
    evaluate.max_prompts a set."""
    path = Path(params.pairs.out_dir) / "eval.parquet"
    if not path.exists():
        raise RecastError(f"{path} is missing: run `dvc repro pairs` or `recast data build`")
    rows = [EvalPrompt.from_row(r) for r in io.read_parquet(path).to_pylist()]
    ev = params.evaluate
    out: list[EvalPrompt] = []
    for name in [set_name] if set_name else ev.sets:
        in_set = [r for r in rows if r.set == name]
        if not in_set:
            raise RecastError(f"evaluation set {name!r} has no prompts in {path}")
        out += in_set[: ev.max_prompts] if ev.max_prompts else in_set
    return out


def check_inputs(params: Params) -> Path:
    """Fail before any answer is made if the evaluation cannot finish; r_ω's folder."""
    if "ours" not in params.evaluate.systems:
        raise RecastError("evaluate.systems must include 'ours': every cell is ours vs a system")
    return trained_dir(params.reward)


@dataclasses.dataclass
class Loaded:
    """What answering and judging a set needs, loaded once per process rather than per set."""

    reward: RewardModel
    count: Callable[[str], int]
    """Tokens in a text, by the refiner's tokenizer (the cost column)."""
    generator: Generator
    judge: JudgeType


@contextlib.contextmanager
def loaded(params: Params) -> Iterator[Loaded]:
    """The reward model, the generator and the judge; both backends closed on the way out."""
    from recast.models.load import load_tokenizer

    reward = RewardModel.load(check_inputs(params))
    tokenizer = load_tokenizer(params.refiner.model)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    generator = make_generator(params.generator)
    try:
        with judge_from(params, reward, judging.scores_path(params.evaluate)) as judge:
            yield Loaded(reward, count, generator, judge)
    finally:
        generator.close()


def evaluate_set(
    params: Params, set_name: str, log: Log = _quiet, models: Loaded | None = None
) -> SetResult:
    """Every system's answers to one set's prompts (cached: recast.evaluation.answers), their
    rewards, and the judge's verdicts. A worker that gets no `models` loads its own."""
    if models is None:
        with loaded(params) as models:
            return evaluate_set(params, set_name, log, models)
    ev = params.evaluate
    prompts = eval_prompts(params, set_name)
    questions = [p.prompt for p in prompts]
    ctx = Context(params, models.generator, models.reward, models.count)
    made = {name: answers.answer(ctx, set_name, name, prompts, log) for name in ev.systems}
    rewards = {name: models.reward.score(questions, a.answers) for name, a in made.items()}
    pairs = judging.comparisons(ev.systems)
    log(f"{set_name}: judging {len(pairs)} comparisons ({judge_name(params)})")
    judged = {
        (system, other): models.judge.judge(questions, made[system].answers, made[other].answers)
        for system, other in pairs
    }
    return SetResult(set_name, prompts, made, rewards, judged, os.getpid())


@dataclasses.dataclass
class Evaluation:
    """What evaluate returns: results.json's content, the judgments per prompt by comparison,
    and the process each set ran in."""

    result: dict[str, Any]
    judgments: dict[str, list[dict[str, Any]]]
    workers: dict[str, int]


def evaluate(params: Params, log: Log = _quiet, map_sets: MapSets | None = None) -> Evaluation:
    """Every set through evaluate_set (in this process, or fanned out by `map_sets`), then the
    judge's agreement with labels and the cells "ours vs X" per set and over all sets."""
    ev = params.evaluate
    check_inputs(params)
    labelled = judging.labelled_pairs(params)
    if map_sets is None:  # one reward model, generator and judge for every set
        with loaded(params) as models:
            per_set = [evaluate_set(params, s, log, models) for s in ev.sets]
            log(f"judge: {judge_name(params)} against labelled pairs")
            trust = judging.agreement(models.judge, labelled)
    else:
        log(f"answering and judging {len(ev.sets)} sets on {params.orchestration.runner}")
        per_set = map_sets(params, list(ev.sets))
        log(f"judge: {judge_name(params)} against labelled pairs")
        with judge_from(params, store=judging.scores_path(params.evaluate)) as judge:
            trust = judging.agreement(judge, labelled)
    table, judgments = results.cells(per_set, ev)
    judge = {"model": ev.judge_model, "mode": ev.judge_mode, "name": judge_name(params)}
    return Evaluation(
        results.result(per_set, ev, judge, trust, table),
        judgments,
        {r.set: r.worker for r in per_set},
    )
