"""Pairs per second of the default judge against two earlier pointwise judges, in the same run.

"Filed" is the pointwise judge issue 11 was filed against: two forward passes per answer (one
for "Yes", one for "No", through the backend's `score`), whole answers, OpenMP's default wait.
"Today" (main before the shared prefix): the pointwise judge as `judge_from` builds it (dtype auto:
bf16 weights on a CPU with avx512_bf16, the Yes/No logits in fp32, one forward pass per answer,
answers cut to evaluate.judge_max_answer_words, every whole prompt run) under OpenMP's default
wait policy (threads spin 300,000 rounds at each barrier before sleeping). "Now": the same
model and weights with the judge header's key/value cache shared by every prompt (on a CPU;
the rest of each prompt batched across questions), and OpenMP threads that wait passively
(recast sets OMP_WAIT_POLICY=PASSIVE). The wait policy is fixed when OpenMP starts, so each
judge runs in its own process, one after the other, on the same labelled pairs; each prints its
agreement and the prompt tokens its LLM runs per answer (what a compute-bound CPU pays for),
and each baseline's verdicts are compared with now's pair by pair. Usage:

    python benchmarks/judge_throughput.py [--pairs FILE] [--n 20] [--set evaluate.judge_mode=…]

With evaluate.judge_mode=ensemble "now" adds the reward model (train it first: `recast
reward`) and asks the LLM about evaluate.judge_llm_share of the pairs (the cascade), and
with evaluate.judge_mode=reward "now" is the reward model alone; the baselines are always
pointwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recast.evaluation.judge import PointwiseJudge
    from recast.records import PreferencePair

BPO = Path("src/recast/data/samples/eval-samples/bpo_test.json")


class _ScoreOnly:
    """The backend seen through `score` alone, as the filed judge used it: PointwiseJudge then
    runs one pass for "Yes" and one for "No" per answer."""

    def __init__(self, backend: object) -> None:
        self.score = backend.score  # type: ignore[attr-defined]


def tokens_per_answer(
    judge: PointwiseJudge, tokenizer: Any, pairs: list[PreferencePair], passes: int
) -> float:
    """Prompt tokens the judge LLM runs per answer it reads, counted as LocalGenerator runs
    them: each pass's whole prompt, less the shared header where the judge shares it. On a
    compute-bound CPU the judge's time follows this count."""
    from recast.generator.local import _common_prefix, chat_ids

    header = chat_ids(tokenizer, judge.header) if judge.share_prefix else []
    counts = []
    for p in pairs:
        for answer in (p.chosen, p.rejected):
            ids = chat_ids(tokenizer, judge.prompt(p.prompt, answer))
            counts.append(passes * (len(ids) - _common_prefix(ids[:-1], header)))
    return sum(counts) / len(counts)


def worker(args: argparse.Namespace) -> None:
    """One judge in this process: its seconds, measurement and per-pair verdicts as JSON."""
    from recast.config import load_params
    from recast.evaluation.agreement import measure, read_labelled_pairs
    from recast.evaluation.judge import EnsembleJudge, PointwiseJudge, RewardJudge
    from recast.evaluation.reward import RewardModel
    from recast.generator import make_generator

    params = load_params(args.params, args.set)
    ev = params.evaluate
    pairs = read_labelled_pairs(args.pairs, args.n)
    spec = dataclasses.replace(
        params.generator, backend=ev.judge_backend, model=ev.judge_model, dtype="auto"
    )
    backend = make_generator(spec)
    baseline = args.worker != "now"  # filed and today are always pointwise
    filed = args.worker == "filed"
    pointwise = PointwiseJudge(
        _ScoreOnly(backend) if filed else backend,
        ev.judge_tie_margin,
        None if filed else ev.judge_max_answer_words,
        share_prefix=not baseline,
    )
    judge: PointwiseJudge | EnsembleJudge | RewardJudge = pointwise
    if not baseline and ev.judge_mode in ("ensemble", "reward"):
        reward = RewardJudge(RewardModel.load(Path(params.reward.out_dir) / "model"))
        reward.scores(["Say hi."], ["Hi."])  # warm-up, as for the LLM below
        judge = (
            reward
            if ev.judge_mode == "reward"
            else EnsembleJudge([reward, pointwise], ev.judge_tie_margin, ev.judge_llm_share)
        )
    elif ev.judge_mode not in ("pointwise", "ensemble", "reward"):
        raise SystemExit(f"evaluate.judge_mode={ev.judge_mode}: this benchmark times score judges")
    # warm-up on a prompt that shares no question with the pairs: first-call allocations
    PointwiseJudge(backend, share_prefix=False).log_odds(["Say hi."], ["Hi."])
    t0 = time.perf_counter()
    m = measure(judge, pairs)
    seconds = time.perf_counter() - t0
    questions = [p.prompt for p in pairs]
    # the pointwise scores are cached in memory by now, so this runs no model again
    judged = judge.judge(questions, [p.chosen for p in pairs], [p.rejected for p in pairs])
    verdicts = [o == "win" for o in judged.outcomes]
    out = {"seconds": seconds, "n": len(pairs), "agreement": m.agreement, "ties": m.ties}
    out |= {"verdicts": verdicts, "mode": "pointwise" if baseline else ev.judge_mode}
    out |= {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "model": ev.judge_model}
    out |= {"llm_share": ev.judge_llm_share if ev.judge_mode == "ensemble" else 1.0}
    tokenizer = getattr(backend, "tokenizer", None)  # the local backend's; http has none
    reads = tokenizer is not None and (baseline or ev.judge_mode != "reward")
    out["tokens_per_answer"] = (
        tokens_per_answer(pointwise, tokenizer, pairs, 2 if filed else 1) if reads else None
    )
    Path(args.out).write_text(json.dumps(out))


def _tokens(n: float | None) -> str:
    return "n/a" if n is None else f"{n:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=BPO, help="labelled pairs (BPO-test schema …)")
    ap.add_argument("--n", type=int, default=20, help="first N pairs")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], help="params override (repeatable)")
    ap.add_argument("--worker", choices=["filed", "today", "now"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("filed", "today", "now"):
            env = dict(os.environ)
            if name != "now":  # libgomp's own default when OMP_WAIT_POLICY is unset
                env.pop("OMP_WAIT_POLICY", None)
                env["GOMP_SPINCOUNT"] = "300000"
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, __file__, "--worker", name, "--out", str(out)]
            cmd += ["--pairs", str(args.pairs), "--n", str(args.n), "--params", args.params]
            cmd += [x for s in args.set for x in ("--set", s)]
            subprocess.run(cmd, env=env, check=True)
            results[name] = json.loads(out.read_text())
    filed, today, now = results["filed"], results["today"], results["now"]
    print(f"judge {now['model']}, {now['n']} labelled pairs from {args.pairs}")
    rows = {
        "filed: pointwise, two passes, whole answers, default wait": filed,
        "today: pointwise, whole prompts, OpenMP default wait": today,
        (
            "now: the reward model alone (no LLM)"
            if now["mode"] == "reward"
            else f"now: {now['mode']} (LLM on {100 * now['llm_share']:.0f}% of pairs), "
            "shared prefix, passive wait"
        ): now,
    }
    for name, r in rows.items():
        print(
            f"{name:<58} {r['n'] / r['seconds']:6.3f} pairs/s ({r['seconds']:6.1f} s)  "
            f"agreement {100 * (r['agreement'] or 0):.0f}%  ties {100 * (r['ties'] or 0):.0f}%  "
            f"LLM tokens/answer {_tokens(r['tokens_per_answer'])}"
        )
    for name, base in (("filed", filed), ("today", today)):
        same = sum(a == b for a, b in zip(base["verdicts"], now["verdicts"], strict=True))
        print(f"same verdict as {name} on {same} / {now['n']} pairs")
        print(f"speed-up over {name}: {base['seconds'] / now['seconds']:.2f}x")
        if base["tokens_per_answer"] and now["tokens_per_answer"]:
            tokens = base["tokens_per_answer"] / now["tokens_per_answer"]
            print(f"LLM tokens per answer, {name} / now: {tokens:.2f}x")


if __name__ == "__main__":
    main()
