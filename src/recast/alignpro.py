"""Align-Pro (paper 004): a prompter ρ(x'|x) in front of the frozen generator π_F, trained by
KL-regularized RL against a reward model r (Eq. 9):

    max_ρ  E_{x~P, x'~ρ(·|x), y~π_F(·|x')}[ r(x, y) ]  −  λ · KL( ρ(·|x) ‖ ρ_sft(·|x) )

The trainer is TRL's GRPO: it takes the reward as a callable (here: send x' to the black-box
generator, score (x, y) with the Bradley-Terry reward model) and its `beta` is λ, the weight
of the KL to the frozen reference ρ_sft, the prompter before RL. TRL's PPO would need the
reward as a sequence-classification model, which a black-box generator in the loop is not
(docs/method.md).

The oracle of Eq. 7 is the generator itself trained by the same GRPO on the same reward (with
white-box access), so Δ1 = J(oracle) − J(π_F) and Δ2 = J(π_F) − J(ρ) are measured, not assumed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recast import io
from recast.alignpro_config import PrompterParams
from recast.config import Params
from recast.evaluation.prompter import PROMPTER, eval_sampling, rewrite
from recast.evaluation.reward import RewardModel, trained_dir
from recast.generator import make_generator
from recast.generator.base import Generator, Sampling
from recast.refiner.refine import Guard
from recast.trl_run import save_policy, trainer_args


def text_of(completion: Any) -> str:
    """A TRL completion (text, or a conversational list of messages) as text."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion)
    return str(completion)


class GeneratorReward:
    """R(x, x') of Lemma 5.1 for one sample: y ~ π_F(·|x'), then r(x, y). TRL calls it with the
    batch's completions (the x') and the dataset's other columns (`query` is x).

    With a guard (refiner.guard), an x' that the rewrite check finds harmful (it answers x,
    drifts or is degenerate) is sent as x: it scores as x would, so pasting an answer into x'
    buys the prompter nothing (the reward passes through the same generator as recast's F,
    and can be gamed the same way; see docs/method.md, "The rewrite guard"). The verdicts are
    counted in `guard.counts` either way."""

    __name__ = "generator_reward"  # TRL logs each reward function under its __name__

    def __init__(
        self,
        generator: Generator,
        reward: RewardModel,
        sampling: Sampling,
        guard: Guard | None = None,
    ) -> None:
        self.generator, self.reward, self.sampling = generator, reward, sampling
        self.guard = guard
        self.calls = 0

    def __call__(self, prompts: list[Any], completions: list[Any], query: list[str], **_: Any):
        x_prime = [text_of(c).strip() for c in completions]
        sent = x_prime if self.guard is None else self.guard.apply(list(query), x_prime)[0]
        answers = self.generator.generate(sent, self.sampling)
        self.calls += len(answers)
        return self.reward.score(list(query), answers)


class AnswerReward:
    """r(x, y) for the oracle, which answers x itself (its completions are y)."""

    __name__ = "answer_reward"

    def __init__(self, reward: RewardModel) -> None:
        self.reward = reward

    def __call__(self, prompts: list[Any], completions: list[Any], query: list[str], **_: Any):
        return self.reward.score(list(query), [text_of(c).strip() for c in completions])


def sequence_kl(
    logits_p: torch.Tensor, logits_q: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-sequence Monte-Carlo estimate of KL(p ‖ q) from tokens sampled from p:
    Σ_t [log p(x'_t | x'_<t) − log q(x'_t | x'_<t)] over the unmasked positions. (B,)"""
    logp = torch.log_softmax(logits_p.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    logq = torch.log_softmax(logits_q.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    return ((logp - logq) * mask).sum(-1)


def grpo(
    model_spec: str,
    queries: list[str],
    prompt_of: Callable[[str], str],
    reward_fn: Callable[..., list[float]],
    pp: PrompterParams,
    lam: float,
    steps: int,
    out: Path,
) -> tuple[int, list[dict[str, Any]]]:
    """One GRPO run (the prompter's, or the oracle's); saves the policy to out/model and
    returns the steps it took and TRL's log at each step that sampled (step, reward, kl)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from recast.models.load import load_causal_lm, pick_device

    device = pick_device(pp.device)
    model, tokenizer = load_causal_lm(model_spec, "float32", device)
    data = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": prompt_of(q)}], "query": q} for q in queries]
    )
    args = GRPOConfig(
        beta=lam,
        learning_rate=pp.lr,
        max_steps=steps,
        num_generations=pp.num_generations,
        per_device_train_batch_size=pp.num_generations,  # one query's group per step
        max_completion_length=pp.max_new_tokens,
        temperature=pp.temperature,
        steps_per_generation=pp.steps_per_generation,
        **trainer_args(out, pp.seed, device),
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_fn,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
    )
    trainer.train()
    rows = [row for row in save_policy(trainer, tokenizer, out) if "reward" in row]
    return trainer.state.global_step, rows


def returns(
    pp: PrompterParams,
    reward: RewardModel,
    queries: list[str],
    sent: list[str],
    generator: Generator,
) -> list[float]:
    """r(x, y) per query with y ~ π(·|sent): one sample each, the paper's evaluation sampling."""
    answers = generator.generate(sent, eval_sampling(pp))
    return reward.score(queries, answers)


def _rewrite(params: Params, spec: str, queries: list[str]) -> list[str]:
    return rewrite(params.prompter, params.generator, spec, queries)


def gap(a: list[float], b: list[float], n_boot: int, seed: int) -> dict[str, float]:
    """mean(a − b) over the same queries, with a paired bootstrap 95% interval."""
    d = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, (n_boot, d.size))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci95": [float(lo), float(hi)]}


def mean_return(params: Params, spec: str, queries: list[str]) -> float:
    """J(ρ) for a prompter spec (folder or registry URI) on `queries`."""
    reward = RewardModel.load(trained_dir(params.reward))
    generator = make_generator(params.generator)
    try:
        sent = rewrite(params.prompter, params.generator, spec, queries)
        return float(np.mean(returns(params.prompter, reward, queries, sent, generator)))
    finally:
        generator.close()


def key(params: Params, lam: float, oracle: bool) -> str:
    """What a trained prompter depends on: rerun only when one of these changes."""
    parts = {
        k: dataclasses.asdict(getattr(params, k))
        for k in ("prompter", "generator", "reward", "split", "registry")
    }
    parts.update(lam=lam, oracle=oracle, tracking=params.tracking.enabled)
    rp = params.refiner
    if rp.guard:  # the reward's guard; an unguarded prompter keeps its old key
        parts.update(guard=True, check_encoder=rp.check_encoder)
    return io.digest(parts)


def returns_key(params: Params, dev: list[str]) -> str:
    """What J(π_F) and J(ρ_sft) on the dev queries depend on, and λ and GRPO do not: the
    generator, the trained reward model's files, ρ_sft and the evaluation sampling. The prompter
    stage keeps its per-query returns under this key; the λ sweep reuses them when its key is
    the same instead of measuring them again."""
    pp = params.prompter
    folder = Path(trained_dir(params.reward))
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    parts = {
        "generator": dataclasses.asdict(params.generator),
        "rho_sft": {k: getattr(pp, k) for k in ("model", "device", "max_new_tokens", "seed")},
        "sampling": dataclasses.asdict(eval_sampling(pp)),
        "reward": {str(f.relative_to(folder)): io.sha256_file(f) for f in files},
        "dev": dev,
    }
    return io.digest(parts)


def train(
    params: Params,
    train_queries: list[str],
    dev_queries: list[str],
    lam: float,
    out: Path,
    oracle: bool = True,
    known: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Train ρ by GRPO at λ (Eq. 9) into out/model, then measure on the dev queries: J(π_F)
    (no prompter), J(ρ_sft) (the prompter before RL), J(ρ), KL(ρ ‖ ρ_sft), and with `oracle`
    the generator trained on the same reward (out/oracle), for Δ1 and Δ2 of Eq. 7.

    `known`: the per-query returns "frozen" and "sft" of an earlier call with the same
    `returns_key` (the result's "returns"); they do not depend on λ and the sampling is seeded,
    so the prompter stage and the λ sweep measure them once."""
    pp = params.prompter
    reward = RewardModel.load(trained_dir(params.reward))
    train, dev = train_queries, dev_queries
    generator = make_generator(params.generator)
    answer = Sampling(max_new_tokens=pp.answer_tokens, temperature=0.0)  # π_F during training
    t0 = time.perf_counter()
    try:
        guard = Guard.from_params(params.refiner)
        fn = GeneratorReward(generator, reward, answer, guard)
        steps, log = grpo(
            pp.model, train, lambda q: PROMPTER.format(query=q), fn, pp, lam, pp.steps, out
        )
        seconds = time.perf_counter() - t0
        if known is None:
            j_frozen = returns(pp, reward, dev, dev, generator)
            j_sft = returns(pp, reward, dev, _rewrite(params, pp.model, dev), generator)
        else:
            j_frozen, j_sft = known["frozen"], known["sft"]
        j_rho = returns(pp, reward, dev, _rewrite(params, str(out / "model"), dev), generator)
    finally:
        generator.close()
    kl = prompter_kl(pp, str(out / "model"), pp.model, dev)
    result: dict[str, Any] = {
        "lambda": lam,
        "steps": steps,
        "seconds": seconds,
        "generator_calls": fn.calls,
        "guard": params.refiner.guard,
        # the rewrite check's verdicts on every x' the reward saw (check_total of them)
        **{f"reward_{k}": v for k, v in guard.flagged().items()},
        "curve": [
            {"step": r["step"], "reward": r["reward"], "kl": r.get("kl")} for r in log
        ],  # one row a generation batch: its reward is the mean over its x'
        "J_frozen": float(np.mean(j_frozen)),
        "J_sft_prompter": float(np.mean(j_sft)),
        "J_prompter": float(np.mean(j_rho)),
        "reward_var_prompter": float(np.var(j_rho)),
        "reward_var_frozen": float(np.var(j_frozen)),
        "kl_to_sft": kl,
        "gain_over_sft": gap(j_rho, j_sft, 2000, pp.seed),
        "delta_2": gap(j_frozen, j_rho, 2000, pp.seed),
        "dev_queries": len(dev),
        "returns": {"frozen": list(j_frozen), "sft": list(j_sft), "prompter": list(j_rho)},
        "returns_key": returns_key(params, dev),
    }
    if oracle:
        oracle_dir = out / "oracle"
        grpo(
            params.generator.model, train, lambda q: q, AnswerReward(reward), pp, lam,
            pp.oracle_steps, oracle_dir,
        )  # fmt: skip
        tuned = make_generator(
            dataclasses.replace(
                params.generator, backend="local", model=str(oracle_dir / "model"), dtype="float32"
            )
        )
        try:
            j_oracle = returns(pp, reward, dev, dev, tuned)
        finally:
            tuned.close()
        result["J_oracle"] = float(np.mean(j_oracle))
        result["delta_1"] = gap(j_oracle, j_frozen, 2000, pp.seed)
    return result


@torch.inference_mode()
def prompter_kl(
    pp: PrompterParams, spec: str, ref_spec: str, queries: list[str], batch_size: int = 32
) -> float:
    """KL(ρ ‖ ρ_sft) on the dev queries, estimated from x' sampled from ρ (training sampling):
    one x' per query, `batch_size` queries in one left-padded batch, then each model's
    log-probabilities of the sampled tokens in one forward pass (a query at a time took 87 s on
    the 24 default dev queries, on a 2-core CPU; one batch, 28 s)."""
    from recast.generator.local import chat_ids
    from recast.models.load import load_causal_lm

    if not queries:
        return 0.0
    rho, tokenizer = load_causal_lm(spec, "float32", pp.device)
    ref, _ = load_causal_lm(ref_spec, "float32", pp.device)
    pad = tokenizer.pad_token_id
    torch.manual_seed(pp.seed)
    values: list[torch.Tensor] = []
    for start in range(0, len(queries), batch_size):
        heads = [
            chat_ids(tokenizer, PROMPTER.format(query=q))
            for q in queries[start : start + batch_size]
        ]
        width = max(len(h) for h in heads)
        head = torch.tensor([[pad] * (width - len(h)) + h for h in heads], device=rho.device)
        head_mask = torch.tensor(
            [[0] * (width - len(h)) + [1] * len(h) for h in heads], device=rho.device
        )
        seq = rho.generate(
            input_ids=head,
            attention_mask=head_mask,
            do_sample=True,
            temperature=pp.temperature,
            max_new_tokens=pp.max_new_tokens,
            pad_token_id=pad,
        )
        tokens = seq[:, width:]
        if tokens.shape[1] == 0:
            continue
        # after a row's end of text, generate pads it: those positions are masked out
        mask = (tokens != pad).float()
        attention = torch.cat([head_mask, torch.ones_like(tokens)], 1)
        values.append(
            sequence_kl(
                completion_logits(rho, seq, attention, width),
                completion_logits(ref, seq, attention, width),
                tokens,
                mask,
            )
        )
    return float(torch.cat(values).mean()) if values else 0.0


def completion_logits(
    model: Any, seq: torch.Tensor, attention_mask: torch.Tensor, head: int
) -> torch.Tensor:
    """The logits that predict seq[:, head:] (the positions head−1 … end−1), for left-padded
    rows: positions count from each row's first real token, as in an unpadded pass."""
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    n = seq.shape[1] - head
    out = model(
        input_ids=seq,
        attention_mask=attention_mask,
        position_ids=positions,
        logits_to_keep=n + 1,
    )
    return out.logits[:, :-1]


def write_report(
    pp: PrompterParams, result: dict[str, Any], rows: list[dict[str, Any]], out: Path
) -> Path:
    """out/report.md with the reward curve (curve.png), the λ sweep `rows` (sweep.png: reward
    against KL) and a table of J, Δ1 and Δ2 (Eq. 7) with their intervals; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rows and all(r["lambda"] != result["lambda"] for r in rows):  # the main run is a point too
        main_row = {k: result[k] for k in ("lambda", "J_prompter", "kl_to_sft")}
        rows = sorted([*rows, main_row], key=lambda r: r["lambda"])

    fig, ax = plt.subplots(figsize=(6, 3))
    steps = [r["step"] for r in result["curve"]]
    rewards = np.array([r["reward"] for r in result["curve"]])
    ax.plot(steps, rewards, color="#bbbbbb", label="per generation batch")
    k = max(1, len(rewards) // 10)
    smooth = np.convolve(rewards, np.ones(k) / k, mode="valid")
    ax.plot(steps[k - 1 :], smooth, color="#2a9d8f", label=f"mean of {k}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward of π_F(ρ(x))")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_path(out / "curve.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

    if rows:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([r["kl_to_sft"] for r in rows], [r["J_prompter"] for r in rows], "o-")
        for r in rows:
            ax.annotate(f"λ={r['lambda']:g}", (r["kl_to_sft"], r["J_prompter"]), fontsize=8)
        ax.set_xlabel("KL(ρ ‖ ρ_sft) on dev")
        ax.set_ylabel("J(ρ): mean reward on dev")
        fig.tight_layout()
        with io.atomic_path(out / "sweep.png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)

    def ci(d: dict[str, Any]) -> str:
        return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"

    lines = [
        "# Align-Pro prompter",
        "",
        f"λ = {result['lambda']:g}, {result['steps']} GRPO steps, {result['dev_queries']} dev "
        f"queries; rewards from the Bradley-Terry model, answers sampled at temperature "
        f"{pp.eval_temperature}, top-p {pp.eval_top_p}, top-k {pp.eval_top_k}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| J(π_F), no prompter | {result['J_frozen']:.3f} |",
        f"| reward variance, no prompter | {result['reward_var_frozen']:.3f} |",
        f"| J(ρ_sft), prompter before RL | {result['J_sft_prompter']:.3f} |",
        f"| J(ρ), trained prompter | {result['J_prompter']:.3f} |",
        f"| reward variance, trained prompter | {result['reward_var_prompter']:.3f} |",
        f"| J(ρ) − J(ρ_sft) | {ci(result['gain_over_sft'])} |",
        f"| KL(ρ ‖ ρ_sft) | {result['kl_to_sft']:.3f} |",
        f"| Δ2 = J(π_F) − J(ρ) | {ci(result['delta_2'])} |",
    ]
    if "delta_1" in result:
        lines += [
            f"| J(oracle): π_F trained on the reward | {result['J_oracle']:.3f} |",
            f"| Δ1 = J(oracle) − J(π_F) | {ci(result['delta_1'])} |",
        ]
    if rows:
        lines += ["", "| λ | J(ρ) | KL(ρ ‖ ρ_sft) |", "|---|---|---|"]
        lines += [
            f"| {r['lambda']:g} | {r['J_prompter']:.3f} | {r['kl_to_sft']:.3f} |" for r in rows
        ]
    lines += ["", "![reward per GRPO step](curve.png)"] + (
        ["![λ sweep](sweep.png)"] if rows else []
    )
    io.write_text(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
