"""Judging: the judge evaluate.judge_mode names, what it is called in the tables, the labelled
pairs its agreement is measured on, and which systems are judged against which."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from recast import io
from recast.config import Params
from recast.data.split import read_split
from recast.errors import RecastError
from recast.evaluation.agreement import Measurement, measure
from recast.evaluation.config import EvaluateParams
from recast.evaluation.judge import EnsembleJudge, PairwiseJudge, PointwiseJudge, RewardJudge
from recast.evaluation.reward import RewardModel, trained_dir
from recast.generator import make_generator
from recast.records import EvalPrompt, PreferencePair

JudgeType = PairwiseJudge | PointwiseJudge | RewardJudge | EnsembleJudge
JUDGE_MODES = ("pointwise", "pairwise", "reward", "ensemble")
_SCORE_INPUTS = ("backend", "model", "dtype", "max_length", "score_mode", "chat_template")


def scores_path(ev: EvaluateParams) -> Path:
    """<evaluate.out_dir>/judge_scores.json: the pointwise judge's log-odds, kept beside the
    answers they judge (PointwiseJudge's `store`)."""
    return Path(ev.out_dir) / "judge_scores.json"


@contextlib.contextmanager
def judge_from(
    params: Params, reward: RewardModel | None = None, store: Path | None = None
) -> Iterator[JudgeType]:
    """The judge evaluate.judge_mode names; its LLM backend (if any) is closed on the way out.
    `store`: where a pointwise judge keeps its scores between runs (None: in memory only).

    pointwise: the judge LLM's P(Yes) per answer; pairwise: Appendix C's prompt in both orders,
    the verdict read from text (for a large judge behind http); reward: the Bradley-Terry reward
    model; ensemble: the mean z-score of reward and P(Yes)'s log-odds. docs/method.md has what
    each measured against labels."""
    ev = params.evaluate
    if ev.judge_mode not in JUDGE_MODES:
        raise RecastError(
            f"evaluate.judge_mode {ev.judge_mode!r} is not one of {', '.join(JUDGE_MODES)}"
        )
    if not 0.0 < ev.judge_llm_share <= 1.0:
        raise RecastError(f"evaluate.judge_llm_share must be in (0, 1]: {ev.judge_llm_share}")
    if ev.judge_mode in ("reward", "ensemble") and reward is None:
        reward = RewardModel.load(trained_dir(params.reward))
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
        # what makes a log-odds: the model and how it is run, not how requests are spread
        key = io.digest({k: getattr(spec, k) for k in _SCORE_INPUTS})
        pointwise = PointwiseJudge(
            backend, ev.judge_tie_margin, ev.judge_max_answer_words, store=store, store_key=key
        )
        if ev.judge_mode == "pointwise":
            yield pointwise
        else:
            yield EnsembleJudge(
                [RewardJudge(reward), pointwise], ev.judge_tie_margin, ev.judge_llm_share
            )
    finally:
        backend.close()


def judge_name(params: Params) -> str:
    """What judged, in words: the mode and the model(s) behind it."""
    ev = params.evaluate
    if ev.judge_mode == "reward":
        return f"reward model on {params.reward.encoder} (reward)"
    if ev.judge_mode == "ensemble" and ev.judge_llm_share < 1.0:
        share = f"{100 * ev.judge_llm_share:.0f}%"
        return f"reward model + {ev.judge_model} P(Yes) on its closest {share} (cascade)"
    if ev.judge_mode == "ensemble":
        return f"reward model + {ev.judge_model} P(Yes) (ensemble)"
    return f"{ev.judge_model} ({ev.judge_mode})"


def labelled_pairs(params: Params) -> dict[str, list[PreferencePair]]:
    """The labelled pairs the evaluation measures its judge on: BPO-test good_res vs bad_res
    (the evaluation set's own labels), HH-RLHF chosen vs rejected from the dev split, and the
    whole dev split (every source; the reward model never trains on it, and it is the largest
    held-out set the judge has), at most evaluate.agreement_pairs of each."""
    n = params.evaluate.agreement_pairs
    path = Path(params.pairs.out_dir) / "eval.parquet"
    bpo = [EvalPrompt.from_row(r) for r in io.read_parquet(path).to_pylist()]
    dev = read_split(params.split, "dev")
    out = {
        "bpo_test": [
            PreferencePair("bpo_test", p.prompt, p.reference, p.meta["bad_res"])
            for p in bpo
            if p.set == "bpo_test" and p.reference and p.meta.get("bad_res")
        ][:n],
        "hh_rlhf": [p for p in dev if p.source == "hh_rlhf"][:n],
        "dev_split": dev[:n],
    }
    return {k: v for k, v in out.items() if v}


def agreement(
    judge: JudgeType, labelled: dict[str, list[PreferencePair]]
) -> dict[str, Measurement]:
    """The judge against labels, with the length rule beside it (recast judge measure's
    function, on the evaluation's labelled pairs)."""
    return {name: measure(judge, pairs) for name, pairs in labelled.items()}


def comparisons(systems: list[str]) -> list[tuple[str, str]]:
    """The judged pairs: ours against every other system (Tables 2-3), and Align-Pro's prompter
    against no prompter (its paper's win rate)."""
    pairs = [("ours", s) for s in systems if s != "ours"]
    if "alignpro" in systems and "org" in systems:
        pairs.append(("alignpro", "org"))
    return pairs
