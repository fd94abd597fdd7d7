"""The evaluation stages, called alike by the CLI (hence DVC) and the Prefect tasks:
`reward` (train the Bradley-Terry reward model), `evaluate` (every system's answers, the judge's
win / loss / tie cells against "ours", rewards and costs) and `report` (Markdown, HTML, plots).

`evaluate` works set by set (evaluate_set), so that the sets can fan out over a cluster; each
system's answers to a set are written as soon as they exist, keyed by the inputs that made them,
so a killed `evaluate` resumes without regenerating them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from recast import io
from recast.config import Params
from recast.data.stages import METRICS_DIR
from recast.errors import RecastError
from recast.evaluation.agreement import Measurement, length, measure
from recast.evaluation.bon import best_of_n
from recast.evaluation.bootstrap import bootstrap_ci, rates, win_minus_loss
from recast.evaluation.bpo import optimize
from recast.evaluation.judge import (
    EnsembleJudge,
    Judged,
    PairwiseJudge,
    PointwiseJudge,
    RewardJudge,
)
from recast.evaluation.length_control import length_controlled_win_rate
from recast.evaluation.reward import (
    RewardModel,
    pairwise_accuracy,
    prefers_longer,
    train_head,
    train_reward,
)
from recast.evaluation.sr import speculative_rejection
from recast.generator import make_generator
from recast.generator.base import Generator, Sampling
from recast.records import EvalPrompt, PreferencePair
from recast.refiner.refine import Refined
from recast.tracking import Tracker

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- reward model ----------------------------------------------------------------------------


def reward_stage(params: Params, log: Log = _quiet) -> dict[str, Any]:
    """Train r_ω on D (Eq. 4); report its pairwise accuracy on the held-out dev split."""
    from recast.runs import load_split

    rp = params.reward
    train, dev = load_split(params, "train"), load_split(params, "dev")
    train = train[: rp.train_size] if rp.train_size else train
    log(f"reward model: {rp.encoder} + scalar head on {len(train)} pairs")
    model = RewardModel.from_encoder(rp.encoder, rp.max_length, rp.length_nuisance)
    start = time.perf_counter()
    if rp.train_encoder:
        losses = train_reward(model, train, rp.epochs, rp.lr, rp.batch_size, rp.seed)
    else:  # frozen encoder: seconds_per_100_steps below includes the one-off feature pass
        losses = train_head(model, train, rp.head_epochs, rp.head_lr, rp.batch_size, rp.seed)
    seconds = time.perf_counter() - start
    out = Path(rp.out_dir)
    model.save(out / "model")
    metrics = {
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "final_loss": float(np.mean(losses[-10:])),
        "steps": len(losses),
        "seconds_per_100_steps": 100 * seconds / max(len(losses), 1),
        "train_seconds": seconds,
        "length_coef": float(model.beta),
        "train_accuracy": pairwise_accuracy(model, train[:256]),
        "dev_accuracy": pairwise_accuracy(model, dev),
        "dev_prefers_longer": prefers_longer(model, dev),
    }
    io.write_json(out / "losses.json", losses)
    io.write_json(METRICS_DIR / "reward.json", metrics)
    return metrics


# -- answers -----------------------------------------------------------------------------------


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


@dataclasses.dataclass
class Answers:
    """One system's answers to every evaluation prompt, and what they cost."""

    system: str
    answers: list[str]
    calls: int
    """Generator calls (a Best-of-N prompt costs N)."""
    tokens: int
    """Tokens the generator produced, counted with the refiner's tokenizer."""
    sent: list[str] | None = None
    """What the generator was asked (x' for "ours"), where it differs from the query."""
    fallbacks: int | None = None
    """Queries the rewrite guard sent as x instead of x' (refiner systems only)."""
    verdicts: list[str] | None = None
    """The rewrite check's verdict on each x' before any guard (systems that rewrite x)."""


ABLATIONS = {"no_cmaes": "no-cmaes", "omega_0": "omega-0"}


def _refiner_spec(params: Params, system: str) -> str:
    """The refiner behind "ours" or an ablation (Table 3: without CMA-ES; Figure 3: ω = 0)."""
    from recast.runs import final_checkpoint

    if system == "ours":
        return params.evaluate.refiner or str(final_checkpoint(params))
    folder = Path(params.evaluate.ablations_dir) / ABLATIONS[system]
    path = folder / f"round-{params.refiner.rounds}" / "refiner"
    if not (path / "config.json").exists():
        raise RecastError(f"no {system} refiner at {path}: run `dvc repro ablate` first")
    return str(path)


def _refined(params: Params, questions: list[str], spec: str) -> list[Refined]:
    """x' = p_im(x) from the unbiased trained refiner through the one refine path (decode ->
    check -> guard): `sent` is x where the guard (refiner.guard) rejects x' or x' is empty."""
    from recast.refiner.model import Refiner
    from recast.refiner.refine import refine

    refiner = Refiner.from_params(spec, params.refiner)
    rp = params.refiner
    return refine(
        refiner,
        questions,
        rp.max_refined_tokens,
        guard=rp.guard,
        check_encoder=rp.check_encoder,
    )


def _verdicts(params: Params, xs: list[str], x_primes: list[str]) -> list[str]:
    """The rewrite check on a baseline's x' (BPO, Align-Pro), which no guard protects."""
    from recast.refiner.check import check_many, encoder

    spec = params.refiner.check_encoder
    return [c.verdict for c in check_many(xs, x_primes, encoder=encoder(spec) if spec else None)]


def rewrite_shares(verdicts: list[str], fallbacks: int | None) -> dict[str, float | int | None]:
    """What a system sent instead of x: shares of rewrite (not a copy), copy and harmful x'
    (answers, drift, degenerate) before the guard, and the guard's fallback rate after it."""
    n = len(verdicts)
    harmful = sum(v in ("answers", "drift", "degenerate") for v in verdicts)
    return {
        "n": n,
        "rewrite": sum(v == "rewrite" for v in verdicts) / n,
        "copy": sum(v == "copy" for v in verdicts) / n,
        "harmful": harmful / n,
        "fallback": None if fallbacks is None else fallbacks / n,
    }


def _rewrites(per_set: list[SetResult], systems: list[str]) -> dict[str, dict[str, Any]]:
    """rewrite_shares per system that rewrites x, per set and over all sets."""
    out: dict[str, dict[str, Any]] = {}
    for name in systems:
        answered = [r.systems[name] for r in per_set]
        if not all(a.verdicts for a in answered):
            continue
        out[name] = {r.set: rewrite_shares(a.verdicts or [], a.fallbacks)
                     for r, a in zip(per_set, answered, strict=True)}  # fmt: skip
        fell = [a.fallbacks for a in answered]
        out[name]["all"] = rewrite_shares(
            [v for a in answered for v in a.verdicts or []],
            None if None in fell else sum(f or 0 for f in fell),
        )
    return out


def _system(
    name: str,
    params: Params,
    generator: Generator,
    reward: RewardModel,
    questions: list[str],
    count: Callable[[str], int],
) -> Answers:
    ev = params.evaluate
    greedy = Sampling(max_new_tokens=ev.max_new_tokens, temperature=0.0, seed=ev.seed)
    sampled = dataclasses.replace(
        greedy, temperature=ev.temperature, top_p=params.sampling.top_p, top_k=params.sampling.top_k
    )
    if name == "org":
        answers = generator.generate(questions, greedy)
        return Answers(name, answers, len(questions), sum(map(count, answers)))
    if name == "ours" or name in ABLATIONS:
        refined = _refined(params, questions, _refiner_spec(params, name))
        sent = [r.sent for r in refined]
        answers = generator.generate(sent, greedy)
        fell = sum(r.fallback for r in refined)
        verdicts = [r.verdict for r in refined]
        n, tokens = len(questions), sum(map(count, answers))
        return Answers(name, answers, n, tokens, sent, fell, verdicts)
    if name == "bpo":
        sent = optimize(params, questions)
        answers = generator.generate(sent, greedy)
        n, tokens = len(questions), sum(map(count, answers))
        return Answers(name, answers, n, tokens, sent, None, _verdicts(params, questions, sent))
    if name == "alignpro":  # the Align-Pro prompter's x', sampled as in its paper
        from recast.alignpro import rewrite

        path = Path(params.prompter.out_dir) / "model"
        if not (path / "config.json").exists():
            raise RecastError(f"no Align-Pro prompter at {path}: run `recast prompter` first")
        sent = rewrite(params, str(path), questions)
        answers = generator.generate(sent, greedy)
        n, tokens = len(questions), sum(map(count, answers))
        return Answers(name, answers, n, tokens, sent, None, _verdicts(params, questions, sent))
    if name == "dpo":  # the white-box baseline: a DPO-tuned copy of the generator, locally
        path = Path(params.dpo.out_dir) / "model"
        if not (path / "config.json").exists():
            raise RecastError(f"no DPO model at {path}: run `recast dpo` first")
        tuned = make_generator(
            dataclasses.replace(params.generator, backend="local", model=str(path))
        )
        try:
            answers = tuned.generate(questions, greedy)
        finally:
            tuned.close()
        return Answers(name, answers, len(questions), sum(map(count, answers)))
    if name == "bon":
        answers, _, calls, tokens = best_of_n(
            generator, reward, questions, ev.bon_n, sampled, count
        )
        return Answers(name, answers, calls, tokens)
    if name == "sr":
        answers, _, calls, tokens = speculative_rejection(
            generator, reward, questions, ev.sr_n, ev.sr_alpha, ev.sr_chunk, sampled, count
        )
        return Answers(name, answers, calls, tokens)
    raise RecastError(
        f"evaluate.systems: unknown system {name!r} "
        "(org, ours, bon, sr, bpo, dpo, no_cmaes, omega_0, alignpro)"
    )


TRAINED = {"bpo": "bpo", "alignpro": "prompter", "dpo": "dpo"}
"""Systems backed by a model another stage trains: system -> its params section."""


def _weights_digest(folder: Path) -> str | None:
    weights = folder / "model.safetensors"
    return io.sha256_file(weights) if weights.exists() else None


def _answers_key(params: Params, name: str, prompts: list[EvalPrompt]) -> str:
    """What a system's answers depend on: rerun only when one of these changes."""
    parts = {
        "system": name,
        "prompts": [p.id for p in prompts],
        "generator": dataclasses.asdict(params.generator),
        "evaluate": {
            k: v
            for k, v in dataclasses.asdict(params.evaluate).items()
            if not k.startswith(
                ("judge", "agreement", "n_boot", "out_dir", "sets", "max_prompts", "systems")
            )
        },
        "sampling": dataclasses.asdict(params.sampling),
    }
    # the weights' digest: a retrained model's answers are made afresh
    if name == "ours" or name in ABLATIONS:
        parts["refiner"] = dataclasses.asdict(params.refiner)
        spec = _refiner_spec(params, name)
        parts["weights"] = _weights_digest(Path(spec)) or spec
    if name in TRAINED:  # bpo, alignpro, dpo: a model their own stage trained
        section = getattr(params, TRAINED[name])
        parts[TRAINED[name]] = dataclasses.asdict(section)
        parts["weights"] = _weights_digest(Path(section.out_dir) / "model")
    if name in ("bon", "sr"):
        parts["reward"] = dataclasses.asdict(params.reward)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


JudgeType = PairwiseJudge | PointwiseJudge | RewardJudge | EnsembleJudge
JUDGE_MODES = ("pointwise", "pairwise", "reward", "ensemble")


@contextlib.contextmanager
def judge_from(params: Params, reward: RewardModel | None = None) -> Iterator[JudgeType]:
    """The judge evaluate.judge_mode names; its LLM backend (if any) is closed on the way out.

    pointwise: the judge LLM's P(Yes) per answer; pairwise: Appendix C's prompt in both orders,
    the verdict read from text (for a large judge behind http); reward: the Bradley-Terry reward
    model; ensemble: the mean z-score of reward and P(Yes)'s log-odds. docs/method.md has what
    each measured against labels."""
    ev = params.evaluate
    if ev.judge_mode not in JUDGE_MODES:
        raise RecastError(
            f"evaluate.judge_mode {ev.judge_mode!r} is not one of {', '.join(JUDGE_MODES)}"
        )
    if ev.judge_mode in ("reward", "ensemble") and reward is None:
        reward = RewardModel.load(_check_reward(params))
    if ev.judge_mode == "reward":
        yield RewardJudge(reward, ev.judge_tie_margin)
        return
    spec = dataclasses.replace(
        params.generator,
        backend=ev.judge_backend,
        model=ev.judge_model,
        endpoints=list(ev.judge_endpoints),
        dtype="auto",
    )
    backend = make_generator(spec)
    try:
        if ev.judge_mode == "pairwise":
            yield PairwiseJudge(backend, ev.judge_max_new_tokens)
            return
        pointwise = PointwiseJudge(backend, ev.judge_tie_margin, ev.judge_max_answer_words)
        if ev.judge_mode == "pointwise":
            yield pointwise
        else:
            yield EnsembleJudge([RewardJudge(reward), pointwise], ev.judge_tie_margin)
    finally:
        backend.close()


def judge_name(params: Params) -> str:
    """What judged, in words: the mode and the model(s) behind it."""
    ev = params.evaluate
    if ev.judge_mode == "reward":
        return f"reward model on {params.reward.encoder} (reward)"
    if ev.judge_mode == "ensemble":
        return f"reward model + {ev.judge_model} P(Yes) (ensemble)"
    return f"{ev.judge_model} ({ev.judge_mode})"


def labelled_pairs(params: Params) -> dict[str, list[PreferencePair]]:
    """The labelled pairs the evaluation measures its judge on: BPO-test good_res vs bad_res
    (the evaluation set's own labels) and HH-RLHF chosen vs rejected from the dev split (never
    trained on), at most evaluate.agreement_pairs of each."""
    from recast.runs import load_split

    n = params.evaluate.agreement_pairs
    path = Path(params.pairs.out_dir) / "eval.parquet"
    bpo = [EvalPrompt.from_row(r) for r in io.read_parquet(path).to_pylist()]
    out = {
        "bpo_test": [
            PreferencePair("bpo_test", p.prompt, p.reference, p.meta["bad_res"])
            for p in bpo
            if p.set == "bpo_test" and p.reference and p.meta.get("bad_res")
        ][:n],
        "hh_rlhf": [p for p in load_split(params, "dev") if p.source == "hh_rlhf"][:n],
    }
    return {k: v for k, v in out.items() if v}


def _agreement(params: Params, judge: JudgeType) -> dict[str, Measurement]:
    """The judge against labels, with the length rule beside it (recast judge measure's
    function, on the evaluation's labelled pairs)."""
    return {name: measure(judge, pairs) for name, pairs in labelled_pairs(params).items()}


def comparisons(systems: list[str]) -> list[tuple[str, str]]:
    """The judged pairs: ours against every other system (Tables 2-3), and Align-Pro's prompter
    against no prompter (its paper's win rate)."""
    pairs = [("ours", s) for s in systems if s != "ours"]
    if "alignpro" in systems and "org" in systems:
        pairs.append(("alignpro", "org"))
    return pairs


@dataclasses.dataclass
class SetResult:
    """One evaluation set answered by every system and judged: the unit the sets fan out into
    (each can run in its own worker process; everything here pickles)."""

    set: str
    prompts: list[EvalPrompt]
    systems: dict[str, Answers]
    rewards: dict[str, list[float]]
    """r_ω(x, y) of each system's answers."""
    judged: dict[tuple[str, str], Judged]
    """(system, versus) -> the judge's outcomes, one per prompt."""
    worker: int
    """The process that ran it: shows where a fanned-out set went."""


MapSets = Callable[[Params, list[str]], list[SetResult]]
"""Runs evaluate_set(params, s) for each set s, anywhere, and returns the results in order."""


def _check_reward(params: Params) -> Path:
    reward_dir = Path(params.reward.out_dir) / "model"
    if not (reward_dir / "head.pt").exists():
        raise RecastError(f"no reward model at {reward_dir}: run `recast reward` first")
    return reward_dir


def _check_inputs(params: Params) -> Path:
    """Fail before any answer is made if the stage cannot finish."""
    if "ours" not in params.evaluate.systems:
        raise RecastError("evaluate.systems must include 'ours': every cell is ours vs a system")
    return _check_reward(params)


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

    reward = RewardModel.load(_check_inputs(params))
    tokenizer = load_tokenizer(params.refiner.model)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    generator = make_generator(params.generator)
    try:
        with judge_from(params, reward) as judge:
            yield Loaded(reward, count, generator, judge)
    finally:
        generator.close()


def evaluate_set(
    params: Params, set_name: str, log: Log = _quiet, models: Loaded | None = None
) -> SetResult:
    """Every system's answers to one set's prompts (each written as soon as it exists, keyed by
    its inputs, so a rerun reuses it), their rewards, and the judge's verdicts. A worker that
    gets no `models` loads its own."""
    if models is None:
        with loaded(params) as models:
            return evaluate_set(params, set_name, log, models)
    ev = params.evaluate
    prompts = eval_prompts(params, set_name)
    questions = [p.prompt for p in prompts]
    systems: dict[str, Answers] = {}
    for name in ev.systems:
        key = _answers_key(params, name, prompts)
        path = Path(ev.out_dir) / "answers" / set_name / f"{name}.json"
        if path.exists() and io.read_json(path).get("key") == key:
            log(f"{set_name}/{name}: answers from an earlier run ({path})")
            systems[name] = Answers(**io.read_json(path)["answers"])
            continue
        log(f"{set_name}/{name}: answering {len(prompts)} prompts")
        systems[name] = _system(
            name, params, models.generator, models.reward, questions, models.count
        )
        io.write_json(path, {"key": key, "answers": dataclasses.asdict(systems[name])})

    rewards = {name: models.reward.score(questions, a.answers) for name, a in systems.items()}
    log(f"{set_name}: judging {len(comparisons(ev.systems))} comparisons ({judge_name(params)})")
    judged = {
        (system, other): models.judge.judge(
            questions, systems[system].answers, systems[other].answers
        )
        for system, other in comparisons(ev.systems)
    }
    return SetResult(set_name, prompts, systems, rewards, judged, os.getpid())


def evaluate_stage(
    params: Params,
    log: Log = _quiet,
    map_sets: MapSets | None = None,
    *,
    stage: str = "evaluate",
    metrics_file: str = "eval.json",
) -> dict[str, Any]:
    """Every set through evaluate_set (in this process, or fanned out by `map_sets`), then the
    judge's agreement with labels and the cells "ours vs X" per set and over all sets.
    `stage` names the MLflow run and `metrics_file` the DVC metrics (the main job's own)."""
    ev = params.evaluate
    _check_inputs(params)
    if map_sets is None:  # one reward model, generator and judge for every set
        with loaded(params) as models:
            per_set = [evaluate_set(params, s, log, models) for s in ev.sets]
            log(f"judge: {judge_name(params)} against labelled pairs")
            trust = _agreement(params, models.judge)
    else:
        log(f"answering and judging {len(ev.sets)} sets on {params.orchestration.runner}")
        per_set = map_sets(params, list(ev.sets))
        log(f"judge: {judge_name(params)} against labelled pairs")
        with judge_from(params) as judge:
            trust = _agreement(params, judge)
    prompts = [p for r in per_set for p in r.prompts]

    cells = []
    for system, other in comparisons(ev.systems):
        outcomes = {r.set: r.judged[system, other].outcomes for r in per_set}
        outcomes["all"] = [o for r in per_set for o in outcomes[r.set]]
        lengths = {  # answer lengths in words, for the length-controlled win rate
            r.set: [
                [length(a) for a in r.systems[system].answers],
                [length(a) for a in r.systems[other].answers],
            ]
            for r in per_set
        }
        lengths["all"] = [[n for r in per_set for n in lengths[r.set][k]] for k in (0, 1)]
        for set_name in [*ev.sets, "all"]:
            cells.append(
                {
                    "set": set_name,
                    "system": system,
                    "versus": other,
                    "n": len(outcomes[set_name]),
                    "unparsed": sum(o is None for o in outcomes[set_name]),
                    **rates(outcomes[set_name]),
                    "ci95": bootstrap_ci(outcomes[set_name], ev.n_boot, ev.seed),
                    "win_minus_loss": win_minus_loss(outcomes[set_name], ev.n_boot, ev.seed),
                    "lc_win": length_controlled_win_rate(outcomes[set_name], *lengths[set_name]),
                }
            )
        raw = [r for s in per_set for r in s.judged[system, other].raw or [None] * len(s.prompts)]
        io.write_json(
            Path(ev.out_dir) / "judgments" / f"{system}_vs_{other}.json",
            [
                {"id": p.id, "set": p.set, "outcome": o, "raw": list(r) if r else None}
                for p, o, r in zip(prompts, outcomes["all"], raw, strict=True)
            ],
        )

    def total(name: str, field: str) -> Any:
        return sum(getattr(r.systems[name], field) for r in per_set)

    def rewards(name: str) -> list[float]:
        return [v for r in per_set for v in r.rewards[name]]

    result = {
        "prompts": {r.set: len(r.prompts) for r in per_set},
        "judge": {
            "model": ev.judge_model,
            "mode": ev.judge_mode,
            "name": judge_name(params),
            "agreement": {k: dataclasses.asdict(v) for k, v in trust.items()},
        },
        "cells": cells,
        "systems": {
            name: {
                "calls": total(name, "calls"),
                "tokens": total(name, "tokens"),
                "reward_mean": float(np.mean(rewards(name))),
                "reward_var": float(np.var(rewards(name))),
            }
            for name in ev.systems
        },
        "rewrites": _rewrites(per_set, ev.systems),
    }
    result["mlflow_run_id"] = _track(params, result, stage)
    io.write_json(Path(ev.out_dir) / "results.json", result)
    io.write_json(METRICS_DIR / metrics_file, _flat_metrics(result))
    return {**result, "workers": {r.set: r.worker for r in per_set}}  # pids: not worth a file


def _flat_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """DVC metrics: one key per table cell, agreement and system figure."""
    flat: dict[str, Any] = {}
    for c in result["cells"]:
        cell = f"{c['set']}/{c['system']}_vs_{c['versus']}"
        for k in ("win", "loss", "tie"):
            flat[f"{cell}/{k}"] = None if c[k] is None else round(c[k], 2)
        flat[f"{cell}/unparsed"] = c["unparsed"]
    for cell in result["cells"]:
        name = f"{cell['set']}/{cell['system']}_vs_{cell['versus']}"
        flat[f"{name}/win_minus_loss"] = cell["win_minus_loss"]["value"]
        flat[f"{name}/lc_win"] = cell["lc_win"]
    for src, a in result["judge"]["agreement"].items():
        for key in ("agreement", "length_baseline", "balanced_agreement", "position_consistency"):
            flat[f"judge/{src}/{key}"] = a[key]
    for name, by_set in result.get("rewrites", {}).items():
        for key in ("rewrite", "copy", "harmful", "fallback"):
            flat[f"rewrites/{name}/{key}"] = by_set["all"][key]
    for name, s in result["systems"].items():
        for k, v in s.items():
            flat[f"system/{name}/{k}"] = v
    return flat


def _track(params: Params, result: dict[str, Any], stage: str = "evaluate") -> str | None:
    """An MLflow run `evaluate`: every cell, the judge's agreement, rewards and costs; tagged
    with the training run and refiner it judged, so each table cell traces back."""
    tracker = Tracker(params)
    summary = Path(params.refiner.out_dir) / "summary.json"
    tags = {
        "stage": stage,
        "judge": judge_name(params),
        "refiner": params.evaluate.refiner or "last round",
    }
    if summary.exists() and io.read_json(summary).get("mlflow_run_id"):
        tags["train_run_id"] = io.read_json(summary)["mlflow_run_id"]
    with tracker.run(stage, tags=tags) as run_id:
        tracker.log_params({"evaluate": dataclasses.asdict(params.evaluate)})
        tracker.log_metrics({k.replace("/", "."): v for k, v in _flat_metrics(result).items()})
    return run_id
