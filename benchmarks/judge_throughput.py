"""Pairs per second of the default judge against the pointwise judge as it was, same run.

"As it was" (before issue 11): P(Yes) from two scoring passes per answer (one for "Yes", one
for "No"), whole answers, a tie margin of 0.05. The default (evaluate.judge_mode: ensemble or
pointwise) reads both logits from one forward pass, in fp32, and cuts answers to
evaluate.judge_max_answer_words; the ensemble adds the reward model (train it first:
`recast reward`). Both judge the same real
labelled pairs with the same model, loaded once; the agreement of each is printed beside its
speed, so a faster judge that agrees less is visible. Usage:

    python benchmarks/judge_throughput.py [--pairs FILE] [--n 20] [--set evaluate.judge_model=…]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from recast.config import load_params
from recast.evaluation.agreement import measure, read_labelled_pairs
from recast.evaluation.judge import EnsembleJudge, PointwiseJudge, RewardJudge
from recast.evaluation.reward import RewardModel
from recast.generator import make_generator

BPO = Path("src/recast/data/samples/eval-samples/bpo_test.json")


class Before(PointwiseJudge):
    """The pointwise judge as it was: its tie margin applied to P(Yes), not to log-odds."""

    def scores(self, questions: list[str], answers: list[str]) -> list[float]:
        return self.p_good(questions, answers)


class TwoPasses:
    """The judge backend without its one-pass method: P(Yes) costs two `score` passes."""

    def __init__(self, backend: object) -> None:
        self.score = backend.score  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=BPO, help="labelled pairs (BPO-test schema …)")
    ap.add_argument("--n", type=int, default=20, help="first N pairs")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], help="params override (repeatable)")
    args = ap.parse_args()

    params = load_params(args.params, args.set)
    ev = params.evaluate
    pairs = read_labelled_pairs(args.pairs, args.n)
    spec = dataclasses.replace(
        params.generator, backend=ev.judge_backend, model=ev.judge_model, dtype="auto"
    )
    backend = make_generator(spec)
    pointwise = PointwiseJudge(backend, ev.judge_tie_margin, ev.judge_max_answer_words)
    now: PointwiseJudge | EnsembleJudge = pointwise
    if ev.judge_mode == "ensemble":  # the default: the reward model beside the LLM's log-odds
        reward = RewardModel.load(Path(params.reward.out_dir) / "model")
        now = EnsembleJudge([RewardJudge(reward), pointwise], ev.judge_tie_margin)
    elif ev.judge_mode != "pointwise":
        raise SystemExit(f"evaluate.judge_mode={ev.judge_mode}: this benchmark times LLM judges")
    judges = {
        "before: pointwise, 2 passes, whole answers, margin 0.05": Before(
            TwoPasses(backend),  # type: ignore[arg-type]
            tie_margin=0.05,
            max_answer_words=None,
        ),
        f"now: {ev.judge_mode}, 1 pass, fp32, ≤{ev.judge_max_answer_words} words": now,
    }
    PointwiseJudge(backend).p_good([pairs[0].prompt], ["Yes."])  # warm-up: first-call allocations
    print(f"judge {ev.judge_model} ({ev.judge_backend}), {len(pairs)} labelled pairs from "
          f"{args.pairs}")  # fmt: skip
    rates = {}
    for name, judge in judges.items():
        t0 = time.perf_counter()
        m = measure(judge, pairs)
        seconds = time.perf_counter() - t0
        rates[name] = len(pairs) / seconds
        print(
            f"{name:<58} {rates[name]:6.3f} pairs/s ({seconds:6.1f} s)  agreement "
            f"{100 * (m.agreement or 0):.0f}%  ties {100 * (m.ties or 0):.0f}%"
        )
    before, now = rates.values()
    print(f"speed-up: {now / before:.2f}x")


if __name__ == "__main__":
    main()
