"""The evaluation's params sections (`reward`, `dpo`, `bpo`, `evaluate`, `main`), beside
the code that trains its baselines and judges (recast.evaluation).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass, field

from recast.data.config import EVAL_SETS


@dataclass
class RewardParams:
    """Stage `reward`: the Bradley-Terry reward model r_ω(y|x) (survey 003, Eq. 4)."""

    encoder: str = "minilm-l6"
    """Encoder under the scalar head (a packaged alias, a folder, or a hub id)."""
    train_size: int | None = None
    """First N pairs of D to train on (None: all)."""
    train_encoder: bool = True
    """False: the encoder stays frozen, each answer's pooled features are computed once and only
    the head is fitted (`head_epochs`, `head_lr`; seconds per hundred steps on a CPU). True:
    the encoder is fine-tuned with the head (`epochs`, `lr`; ~15-25 s a step on a shared
    2-core CPU). docs/method.md has both measured."""
    epochs: int = 1
    """Fine-tuning epochs (train_encoder: true)."""
    lr: float = 2.0e-5
    """Fine-tuning learning rate (train_encoder: true)."""
    head_epochs: int = 30
    """Epochs over the cached features (train_encoder: false): a head step is ~1 ms."""
    head_lr: float = 1.0e-3
    """The head's learning rate (train_encoder: false)."""
    batch_size: int = 16
    max_length: int = 256
    """Tokens of question + answer the encoder reads."""
    length_nuisance: bool = False
    """Fit β·log(1 + answer words) beside the reward during training and drop it when scoring,
    so the reward does not learn "longer is better" (see evaluation/reward.py)."""
    seed: int = 0
    out_dir: str = "runs/reward"


@dataclass
class DpoParams:
    """Stage `dpo`: the white-box comparison, the generator itself fine-tuned with DPO (TRL)."""

    model: str | None = None
    """The model to fine-tune (None: generator.model)."""
    train_size: int | None = 64
    """First N pairs of D (None: all)."""
    epochs: int = 1
    lr: float = 1.0e-6
    beta: float = 0.1
    """β of the DPO loss: strength of the implicit KL to the reference model."""
    batch_size: int = 4
    max_length: int = 512
    """Prompt + answer tokens per example."""
    seed: int = 0
    out_dir: str = "runs/dpo"


@dataclass
class BpoParams:
    """Stage `bpo`: a prompt optimizer trained BPO's way (Cheng et al. 2023). A teacher LLM reads
    each preference pair and rewrites the query so that it would elicit the better answer; a
    small LM is then fine-tuned on (query -> optimized query)."""

    teacher: str = "qwen2.5-coder-1.5b-instruct"
    """The LLM that writes the optimized queries (BPO used ChatGPT; any generator spec)."""
    teacher_backend: str = "local"
    """local | http (with teacher_endpoints) | vllm."""
    teacher_endpoints: list[str] = field(default_factory=list)
    model: str = "smollm2-135m-instruct"
    """The optimizer to fine-tune (BPO: Llama-2-7b-chat)."""
    train_size: int | None = 256
    """The teacher rewrites the first N pairs of D whose query stands alone (no earlier turns;
    None: all of them); BPO and the warm start share them."""
    max_new_tokens: int = 128
    """Length of an optimized query."""
    epochs: int = 2
    lr: float = 2.0e-5
    batch_size: int = 4
    max_length: int = 512
    seed: int = 0
    out_dir: str = "runs/bpo"
    rewrites: str = "data/warmstart/rewrites.json"
    """The teacher's rewrites of the first `train_size` training queries with the check's
    verdict on each (stage `rewrites`, committed to git): BPO's optimizer data and the refiner's
    warm start both read it; with refiner.guard only verdict 'rewrite' is kept."""


@dataclass
class EvaluateParams:
    """Stages `evaluate` and `report`: Tables 2-3 on the evaluation sets."""

    sets: list[str] = field(default_factory=lambda: list(EVAL_SETS))
    max_prompts: int | None = None
    """First N prompts of each set (None: all)."""
    systems: list[str] = field(
        default_factory=lambda: [
            "org", "ours", "bon", "sr", "bpo", "dpo", "no_cmaes", "omega_0", "alignpro"
        ]
    )  # fmt: skip
    """Answers compared with "ours": org (the query as is), bon, sr, bpo (the query rewritten by
    the BPO optimizer), dpo (the DPO-tuned generator), and the ablations no_cmaes / omega_0
    (refiners under `ablations_dir`), alignpro (x' from the Align-Pro prompter; it is also
    judged against org)."""
    ablations_dir: str = "runs/ablations"
    """Where the ablation refiners were trained: <dir>/<no-cmaes|omega-0>/round-<S>/refiner."""
    refiner: str | None = None
    """The refiner behind "ours" (None: the last round under refiner.out_dir)."""
    max_new_tokens: int = 256
    """Answer length for every system."""
    temperature: float = 0.7
    """Sampling temperature of Best-of-N and Speculative Rejection (ORG and ours are greedy)."""
    bon_n: int = 120
    """N of Best-of-N (the paper: 120)."""
    sr_n: int = 120
    """Generations Speculative Rejection starts per prompt."""
    sr_alpha: float = 0.5
    """Fraction of partial generations rejected at each checkpoint."""
    sr_chunk: int = 32
    """Tokens between checkpoints."""
    judge_backend: str = "local"
    """Backend of the judge (local | http | vllm), like generator.backend."""
    judge_model: str = "qwen2.5-coder-1.5b-instruct"
    """The judge model (a packaged alias, folder, or the served model's name)."""
    judge_endpoints: list[str] = field(default_factory=list)
    """http: the judge's OpenAI-compatible endpoints."""
    judge_mode: str = "pairwise"
    """'pairwise': Appendix C's prompt, both orders; 'pointwise': P(Yes) per answer from the
    judge model; 'reward': the reward model r_ω; 'ensemble': mean z-score of r_ω and P(Yes).
    `recast judge measure` tells how far each agrees with labels (see docs/method.md)."""
    judge_max_new_tokens: int = 512
    """Pairwise mode: room for the explanation before the verdict."""
    judge_tie_margin: float = 0.0
    """Score-based modes: a score difference at or under this is a tie (0: any difference
    decides; 0.05 on P(Yes) made half of all labelled pairs ties)."""
    judge_max_answer_words: int | None = 200
    """Pointwise / ensemble: the judge reads at most this many words of each answer (None: all)."""
    judge_llm_share: float = 1.0
    """Ensemble: the share of pairs the judge LLM scores as well, those where the reward model's
    margin is smallest; the rest are decided by the reward model alone (1: every pair, the plain
    ensemble; a cascade below 1, EnsembleJudge). Below 1 the reward model alone decides most
    pairs, so Best-of-N and SR, whose answers it picked, are favoured (docs/method.md)."""
    agreement_pairs: int = 64
    """Labelled pairs per source to measure the judge on (BPO-test good/bad, HH-RLHF dev, the
    whole dev split); 64 takes all of them on the embedded defaults (17, 22 and 59)."""
    n_boot: int = 2000
    """Bootstrap resamples for the 95% intervals."""
    seed: int = 0
    out_dir: str = "reports/eval"


@dataclass
class MainParams:
    """The main job (`make run`, DVC stage `main`): ours against ORG on every bundled evaluation
    prompt with the evaluate section's judge, and a printed summary of the whole run."""

    systems: list[str] = field(default_factory=lambda: ["org", "ours"])
    """Systems answered and judged (ours against each other one)."""
    out_dir: str = "reports/main"
    """answers/, judgments/, results.json and summary.md."""
    examples: int = 3
    """x -> x' -> answers shown side by side (the first rewrite of each set, win or not)."""
    width: int = 100
    """Columns of the printed summary."""
