"""The evaluated systems as a registry: each name in evaluate.systems maps to how it answers
the evaluation queries x and to what its answers depend on (the answer cache's key).

    org        the generator answers x as is (greedy)
    ours       the generator answers x' = p_im(x) of the trained refiner (guarded, Eq. 5)
    no_cmaes   the same with Table 3's refiner trained without CMA-ES
    omega_0    the same with Figure 3's refiner trained with ω = 0
    bpo        the generator answers BPO's optimized query
    alignpro   the generator answers x' ~ ρ(·|x) of the Align-Pro prompter
    dpo        the DPO-tuned copy of the generator answers x (white-box)
    bon        Best-of-N of the generator's samples by r_ω
    sr         Speculative Rejection by r_ω

A new system is one function decorated with @system(name, ...); nothing else changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recast import io, layout
from recast.config import Params
from recast.errors import RecastError
from recast.evaluation.bon import best_of_n
from recast.evaluation.bpo import optimize
from recast.evaluation.prompter import rewrite
from recast.evaluation.reward import RewardModel
from recast.evaluation.sr import speculative_rejection
from recast.generator import make_generator
from recast.generator.base import Generator, Sampling
from recast.refiner.config import RefinerParams


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


@dataclasses.dataclass
class Context:
    """What every system answers with: the params, the generator, r_ω, the token counter."""

    params: Params
    generator: Generator
    reward: RewardModel
    count: Callable[[str], int]
    """Tokens in a text, by the refiner's tokenizer (the cost column)."""
    greedy_cache: dict[str, str] = dataclasses.field(default_factory=dict)
    """The generator's greedy answer per query sent, in this set: "ours" sends x itself for
    every x' the guard rejects, and ORG has answered that x already."""

    @property
    def greedy(self) -> Sampling:
        ev = self.params.evaluate
        return Sampling(max_new_tokens=ev.max_new_tokens, temperature=0.0, seed=ev.seed)

    @property
    def sampled(self) -> Sampling:
        """Best-of-N's and SR's sampling (evaluate.temperature, sampling.top_p / top_k)."""
        s = self.params.sampling
        return dataclasses.replace(
            self.greedy, temperature=self.params.evaluate.temperature, top_p=s.top_p, top_k=s.top_k
        )

    def greedy_answers(self, sent: list[str]) -> tuple[list[str], int]:
        """The generator's greedy answers to `sent`, and the tokens they took (an answer to a
        query already answered in this set is that answer: greedy decoding is deterministic)."""
        todo = sorted({q for q in sent if q not in self.greedy_cache})
        if todo:
            made = self.generator.generate(todo, self.greedy)
            self.greedy_cache.update(zip(todo, made, strict=True))
        answers = [self.greedy_cache[q] for q in sent]
        return answers, sum(map(self.count, answers))


Answer = Callable[[Context, list[str]], Answers]
KeyParts = Callable[[Params, str], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    answer: Answer
    key_parts: KeyParts
    """What its answers depend on besides the prompts, generator, evaluate and sampling
    settings: the model behind it (params and weights' digest)."""


SYSTEMS: dict[str, System] = {}


def _nothing(params: Params, name: str) -> dict[str, Any]:
    return {}


def system(name: str, key_parts: KeyParts = _nothing) -> Callable[[Answer], Answer]:
    """Register `fn` as how system `name` answers."""

    def register(fn: Answer) -> Answer:
        SYSTEMS[name] = System(name, fn, key_parts)
        return fn

    return register


def get(name: str) -> System:
    if name not in SYSTEMS:
        raise RecastError(f"evaluate.systems: unknown system {name!r} ({', '.join(SYSTEMS)})")
    return SYSTEMS[name]


def weights_digest(folder: Path) -> str | None:
    weights = folder / "model.safetensors"
    return io.sha256_file(weights) if weights.exists() else None


# -- the refiner and its ablations ----------------------------------------------------------


def refiner_spec(params: Params, name: str) -> str:
    """The refiner behind "ours" (evaluate.refiner, else the last round) or an ablation."""
    if name == "ours":
        return params.evaluate.refiner or str(
            layout.trained_refiner(params.refiner.out_dir, params.refiner.rounds)
        )
    folder = layout.ablation_dir(params.evaluate.ablations_dir, layout.VARIANT_OF_SYSTEM[name])
    return str(
        layout.trained_refiner(
            folder, params.refiner.rounds, f"{name} refiner", "`dvc repro ablate`"
        )
    )


def _refiner_key(params: Params, name: str) -> dict[str, Any]:
    spec = refiner_spec(params, name)
    # the weights' digest: a retrained model's answers are made afresh
    key = {
        "refiner": dataclasses.asdict(params.refiner),
        "weights": weights_digest(Path(spec)) or spec,
    }
    if params.redraw.n:  # off, the answers are the greedy ones cached before redraws existed
        key["redraw"] = dataclasses.asdict(params.redraw)
    return key


@dataclasses.dataclass
class Rewritten:
    """What a system that rewrites x sends the generator, and the rewrite check's verdicts."""

    sent: list[str]
    """x' (or x where the guard fell back)."""
    verdicts: list[str]
    """The check's verdict on each x' before any guard."""
    fallbacks: int | None
    """x sent in place of a rejected x' (None: no guard protects this system)."""


def _refined(params: Params, name: str, questions: list[str]) -> Rewritten:
    """x' = p_im(x) from the unbiased trained refiner through the one refine path (decode ->
    check -> guard): `sent` is x where the guard (refiner.guard) rejects x' or x' is empty."""
    from recast.refiner.model import Refiner
    from recast.refiner.refine import refine

    rp = params.refiner
    refiner = Refiner.from_params(refiner_spec(params, name), rp)
    refined = refine(
        refiner, questions, rp.max_refined_tokens, guard=rp.guard,
        check_encoder=rp.check_encoder, redraw=params.redraw,
    )  # fmt: skip
    return Rewritten(
        [r.sent for r in refined], [r.verdict for r in refined], sum(r.fallback for r in refined)
    )


def _answer_rewritten(ctx: Context, name: str, questions: list[str]) -> Answers:
    """The generator's greedy answers to what system `name` sends (REWRITERS[name])."""
    made = REWRITERS[name](ctx.params, name, questions)
    answers, tokens = ctx.greedy_answers(made.sent)
    return Answers(name, answers, len(questions), tokens, made.sent, made.fallbacks, made.verdicts)


Rewriter = Callable[[Params, str, list[str]], Rewritten]
REWRITERS: dict[str, Rewriter] = {}
"""The systems that rewrite x before the generator answers it, and how: ours, its ablations,
BPO and Align-Pro (scripts/rewrite_shares.py reads their x' without answering)."""


def _rewriter(name: str, key_parts: KeyParts, rewriter: Rewriter) -> None:
    REWRITERS[name] = rewriter
    system(name, key_parts)(lambda ctx, questions: _answer_rewritten(ctx, name, questions))


def _refiner_system(name: str) -> None:
    _rewriter(name, _refiner_key, _refined)


for _name in ("ours", *layout.VARIANT_OF_SYSTEM):  # ours, no_cmaes, omega_0
    _refiner_system(_name)


# -- the generator as is, and the baselines ---------------------------------------------------


@system("org")
def _org(ctx: Context, questions: list[str]) -> Answers:
    answers, tokens = ctx.greedy_answers(questions)
    return Answers("org", answers, len(questions), tokens)


def _trained_key(section: str) -> KeyParts:
    """bpo, alignpro, dpo: a model their own stage trained, under <section>.out_dir/model."""

    def parts(params: Params, name: str) -> dict[str, Any]:
        sp = getattr(params, section)
        folder = Path(sp.out_dir) / "model"
        return {section: dataclasses.asdict(sp), "weights": weights_digest(folder)}

    return parts


def _check_verdicts(rp: RefinerParams, xs: list[str], x_primes: list[str]) -> list[str]:
    """The rewrite check on a baseline's x' (BPO, Align-Pro), which no guard protects."""
    from recast.refiner.check import check_many, encoder

    spec = rp.check_encoder
    return [c.verdict for c in check_many(xs, x_primes, encoder=encoder(spec) if spec else None)]


def _bpo(params: Params, name: str, questions: list[str]) -> Rewritten:
    """BPO's optimized query, unguarded (as published)."""
    sent = optimize(params.bpo, params.generator, questions)
    return Rewritten(sent, _check_verdicts(params.refiner, questions, sent), None)


def _alignpro(params: Params, name: str, questions: list[str]) -> Rewritten:
    """The Align-Pro prompter's x', sampled as in its paper, unguarded."""
    path = Path(params.prompter.out_dir) / "model"
    if not (path / "config.json").exists():
        raise RecastError(f"no Align-Pro prompter at {path}: run `recast prompter` first")
    sent = rewrite(params.prompter, params.generator, str(path), questions)
    return Rewritten(sent, _check_verdicts(params.refiner, questions, sent), None)


_rewriter("bpo", _trained_key("bpo"), _bpo)
_rewriter("alignpro", _trained_key("prompter"), _alignpro)


@system("dpo", _trained_key("dpo"))
def _dpo(ctx: Context, questions: list[str]) -> Answers:
    """The white-box baseline: a DPO-tuned copy of the generator, run locally."""
    path = Path(ctx.params.dpo.out_dir) / "model"
    if not (path / "config.json").exists():
        raise RecastError(f"no DPO model at {path}: run `recast dpo` first")
    tuned = make_generator(
        dataclasses.replace(ctx.params.generator, backend="local", model=str(path))
    )
    try:
        answers = tuned.generate(questions, ctx.greedy)
    finally:
        tuned.close()
    return Answers("dpo", answers, len(questions), sum(map(ctx.count, answers)))


def _reward_key(params: Params, name: str) -> dict[str, Any]:
    return {"reward": dataclasses.asdict(params.reward)}


@system("bon", _reward_key)
def _bon(ctx: Context, questions: list[str]) -> Answers:
    ev = ctx.params.evaluate
    answers, _, calls, tokens = best_of_n(
        ctx.generator, ctx.reward, questions, ev.bon_n, ctx.sampled, ctx.count
    )
    return Answers("bon", answers, calls, tokens)


@system("sr", _reward_key)
def _sr(ctx: Context, questions: list[str]) -> Answers:
    ev = ctx.params.evaluate
    answers, _, calls, tokens = speculative_rejection(
        ctx.generator, ctx.reward, questions, ev.sr_n, ev.sr_alpha, ev.sr_chunk, ctx.sampled,
        ctx.count,
    )  # fmt: skip
    return Answers("sr", answers, calls, tokens)
