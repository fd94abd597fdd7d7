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
        """The generator's greedy answers to `sent`, and the tokens they took."""
        answers = self.generator.generate(sent, self.greedy)
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
    return {
        "refiner": dataclasses.asdict(params.refiner),
        "weights": weights_digest(Path(spec)) or spec,
    }


def _refined(ctx: Context, questions: list[str], name: str) -> Answers:
    """x' = p_im(x) from the unbiased trained refiner through the one refine path (decode ->
    check -> guard): `sent` is x where the guard (refiner.guard) rejects x' or x' is empty."""
    from recast.refiner.model import Refiner
    from recast.refiner.refine import refine

    rp = ctx.params.refiner
    refiner = Refiner.from_params(refiner_spec(ctx.params, name), rp)
    refined = refine(
        refiner, questions, rp.max_refined_tokens, guard=rp.guard, check_encoder=rp.check_encoder
    )
    sent = [r.sent for r in refined]
    answers, tokens = ctx.greedy_answers(sent)
    fell = sum(r.fallback for r in refined)
    verdicts = [r.verdict for r in refined]
    return Answers(name, answers, len(questions), tokens, sent, fell, verdicts)


def _refiner_system(name: str) -> None:
    system(name, _refiner_key)(lambda ctx, questions: _refined(ctx, questions, name))


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


def _check_verdicts(params: Params, xs: list[str], x_primes: list[str]) -> list[str]:
    """The rewrite check on a baseline's x' (BPO, Align-Pro), which no guard protects."""
    from recast.refiner.check import check_many, encoder

    spec = params.refiner.check_encoder
    return [c.verdict for c in check_many(xs, x_primes, encoder=encoder(spec) if spec else None)]


def _rewritten(ctx: Context, name: str, questions: list[str], sent: list[str]) -> Answers:
    answers, tokens = ctx.greedy_answers(sent)
    verdicts = _check_verdicts(ctx.params, questions, sent)
    return Answers(name, answers, len(questions), tokens, sent, None, verdicts)


@system("bpo", _trained_key("bpo"))
def _bpo(ctx: Context, questions: list[str]) -> Answers:
    sent = optimize(ctx.params.bpo, ctx.params.generator, questions)
    return _rewritten(ctx, "bpo", questions, sent)


@system("alignpro", _trained_key("prompter"))
def _alignpro(ctx: Context, questions: list[str]) -> Answers:
    """The Align-Pro prompter's x', sampled as in its paper."""
    path = Path(ctx.params.prompter.out_dir) / "model"
    if not (path / "config.json").exists():
        raise RecastError(f"no Align-Pro prompter at {path}: run `recast prompter` first")
    sent = rewrite(ctx.params.prompter, ctx.params.generator, str(path), questions)
    return _rewritten(ctx, "alignpro", questions, sent)


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
