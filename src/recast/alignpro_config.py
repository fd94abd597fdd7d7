"""The `prompter` params section, beside recast.alignpro (Align-Pro's prompter).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PrompterParams:
    """Stage `prompter`: Align-Pro's prompter ρ(x'|x), trained by GRPO against the reward model
    with the KL weight λ to ρ_sft (paper 004, Eq. 9)."""

    model: str = "smollm2-135m-instruct"
    """ρ_sft, the prompter before RL (here the base instruct model), and ρ's starting point."""
    device: str = "auto"
    lam: float = 0.05
    """λ of Eq. 9: the weight of KL(ρ ‖ ρ_sft) (GRPO's beta)."""
    lambdas: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.2])
    """The λ sweep (stage `prompter_sweep`)."""
    steps: int = 200
    """GRPO steps; each samples `num_generations` x' for one query."""
    oracle_steps: int = 200
    """GRPO steps for the oracle (the generator trained on the same reward, Eq. 7's π*)."""
    lr: float = 1.41e-5
    """The paper's learning rate (TRL's default example)."""
    num_generations: int = 4
    """x' sampled per query: GRPO's group, whose mean reward is the baseline."""
    steps_per_generation: int = 4
    """GRPO steps that share one generation batch: x' for this many queries are sampled, and
    answered by the generator, together, then used one query's group a step (TRL's clipped
    importance ratio accounts for the policy having moved since). On a 2-core CPU the steps
    are mostly decoding, which costs little more for 4 queries than for 1 (SmolLM2-135M,
    40-token x', 48-token answers): an 8-step profile gave 15.4 s a step at 1 and 10.9 s at 4;
    in `make reproduce` the prompter's 24 steps took 390 s at 1 and 322 s at 4."""
    max_new_tokens: int = 64
    """Length of x'."""
    temperature: float = 1.0
    """Sampling of x' during training."""
    answer_tokens: int = 128
    """Length of the generator's answer y."""
    eval_temperature: float = 1.5
    """The paper's evaluation sampling: temperature 1.5, top-p 0.6, top-k 20."""
    eval_top_p: float = 0.6
    eval_top_k: int = 20
    train_size: int | None = 256
    """First N queries of D to train on."""
    dev_size: int = 64
    """Dev queries J is measured on."""
    seed: int = 0
    out_dir: str = "runs/prompter"
    sweep_dir: str = "runs/prompter-sweep"
    """One prompter per λ of the sweep, under lambda-<λ>."""
