"""params.yaml as typed sections, one per DVC stage, with `--set section.key=value` overrides.

Each section is a plain dataclass with a docstring per field (the cleanrl style). Unknown
sections or keys are errors that name the key, so a typo never silently falls back to a default;
so is a number outside its range (RANGES), caught when the params are loaded, before any stage.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recast.errors import ConfigError

TRAINING_SOURCES = ("hh_rlhf", "oasst1", "alpaca_gpt4", "chatbot_arena")
EVAL_SETS = ("bpo_test", "dolly_eval", "vicuna_eval", "self_instruct_eval")


@dataclass
class IngestParams:
    """Stage `ingest`: where raw data comes from."""

    source: str = "local"
    """'local' reads raw dumps under `root`; 'hub' downloads the official releases."""
    root: str = "src/recast/data/samples"
    """Folder of raw dumps in the layout of the bundled samples (default: those samples)."""
    sources: list[str] = field(default_factory=lambda: ["hh_rlhf", "oasst1", "alpaca_gpt4"])
    """Training sources to ingest (any of hh_rlhf, oasst1, alpaca_gpt4, chatbot_arena)."""
    eval_sets: list[str] = field(default_factory=lambda: list(EVAL_SETS))
    """Evaluation sets to ingest."""
    max_records: int | None = None
    """Cap on raw records read per file (None: all), for quick runs on full dumps."""
    out_dir: str = "data/ingest"
    """Where the per-source raw tables are written."""


@dataclass
class PairsParams:
    """Stage `pairs`: raw records -> preference pairs and eval prompts, cleaned."""

    languages: list[str] = field(default_factory=lambda: ["en"])
    """Keep only records in these languages (ISO 639-1)."""
    tokenizer: str = "smollm2-135m-instruct"
    """Model spec whose tokenizer measures lengths (the refiner's, by default)."""
    min_prompt_tokens: int = 2
    """Drop prompts shorter than this."""
    max_prompt_tokens: int = 512
    """Drop prompts longer than this (x must fit the refiner's template)."""
    max_response_tokens: int = 1024
    """Drop pairs whose chosen or rejected answer is longer than this."""
    max_context_turns: int = 8
    """Keep at most this many prior turns of context (the most recent ones)."""
    on_malformed: str = "error"
    """'error' stops at the first malformed raw record; 'drop' skips and counts it."""
    out_dir: str = "data/pairs"
    """Where pairs.parquet and eval.parquet are written."""


@dataclass
class ValidateParams:
    """Stage `validate`: Great Expectations suites over the pairs and eval prompts."""

    max_prompt_chars: int = 20000
    """Upper bound on prompt length in characters."""
    max_response_chars: int = 40000
    """Upper bound on chosen / rejected length in characters."""
    report_dir: str = "reports/validation"
    """Where the JSON results and GE's HTML data docs go."""


@dataclass
class SplitParams:
    """Stage `split`: D (refiner training), D_es (CMA-ES subset) and a held-out dev split."""

    seed: int = 0
    """Seed of the deterministic shuffle."""
    es_size: int = 256
    """|D_es|, the CMA-ES fitness subset (drawn from D)."""
    dev_fraction: float = 0.1
    """Share of pairs held out as the dev split (never seen by search or training)."""
    out_dir: str = "data/splits"
    """Where train / es / dev parquet files are written."""


@dataclass
class GeneratorParams:
    """The frozen black-box generator f."""

    backend: str = "local"
    """'local' (transformers), 'http' (OpenAI-compatible server) or 'vllm' (in-process)."""
    model: str = "smollm2-135m-instruct"
    """Packaged alias, hub id, local HF folder or GGUF file (local / vllm backends); the served
    model name (http backend)."""
    dtype: str = "auto"
    """'auto' (bf16 on GPUs and on CPUs with avx512_bf16 for models over 300M params, else
    fp32), or 'float32' / 'bfloat16' / 'float16'."""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu' or 'cuda'."""
    batch_size: int = 16
    """Most sequences per forward pass (local)."""
    max_batch_tokens: int | None = None
    """Most padded prompt tokens per batch (local); None: 16384 on GPU; on CPU 1024 for
    scoring (compute-bound: padding is pure waste, see benchmarks/generator_score.py) and 8192
    for generation (a decoding step costs about the same for 2 rows as for 16)."""
    max_length: int = 2048
    """Prompt + target token budget; longer inputs are an error, not a silent truncation."""
    endpoints: list[str] = field(default_factory=list)
    """http: base URLs (…/v1) to spread requests over, round-robin."""
    api_key_env: str = "OPENAI_API_KEY"
    """http: environment variable holding the bearer token (may be unset for local servers)."""
    timeout_s: float = 60.0
    """http: per-request timeout."""
    max_retries: int = 4
    """http: retries on 5xx, timeouts and malformed JSON, with exponential backoff."""
    backoff_s: float = 0.5
    """http: first backoff delay; doubles each retry."""
    concurrency: int = 8
    """http: requests in flight at once, over all endpoints."""
    score_mode: str = "echo"
    """http: 'echo' (completions with echo + logprobs) or 'prompt_logprobs' (vLLM's extension)."""
    chat_template: str | None = None
    """http: model spec whose tokenizer renders the chat template for `score` (the server's
    completions endpoint takes raw text); None sends the user text as-is."""


@dataclass
class SamplingParams:
    """Decoding defaults for `recast generate` and everything that samples from f."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens."""
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    """Nucleus mass."""
    top_k: int = 0
    """Top-k (0: off)."""
    seed: int | None = 0
    """Sampling seed."""


@dataclass
class RefinerParams:
    """p_im and its fine-tuning (Eq. 5, 12; Table 5, 'Refiner' column)."""

    model: str = "smollm2-135m-instruct"
    """The refiner LM: packaged alias, hub id, local folder or GGUF file."""
    dtype: str = "float32"
    """Training precision ('float32' on CPU; 'bfloat16' on GPUs)."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda'."""
    rounds: int = 2
    """S, the outer rounds of Algorithm 1 (search -> pseudo-labels -> fine-tune)."""
    epochs: int = 3
    """Fine-tuning epochs per round (Table 5: 3)."""
    lr: float = 1e-5
    """AdamW learning rate (Table 5: 1e-5)."""
    batch_size: int = 8
    """Fine-tuning batch size (Table 5: 8)."""
    omega: float = 0.02
    """ω, the weight of KL(p_im ‖ q_im) in Eq. 12 (Table 5: 0.02); 0 is Figure 3's ablation."""
    max_refined_tokens: int = 64
    """Length of x' and of the pseudo-labels x* (Table 5: n_g = 64)."""
    truth_max_tokens: int = 128
    """Each answer in q_im's truth template is cut to this many tokens."""
    max_prompt_tokens: int = 1024
    """A refiner prompt longer than this is an error (it would not fit the template)."""
    train_size: int | None = None
    """Use the first N pairs of D for pseudo-labels and fine-tuning (None: all of D)."""
    lora: bool = False
    """Fine-tune LoRA adapters (peft) instead of every weight, for larger refiners."""
    lora_r: int = 8
    """LoRA rank."""
    seed: int = 0
    """Seed of the batch order."""
    out_dir: str = "runs/train"
    """Per-round outputs: ξ*, fitness curves, pseudo-labels, checkpoints."""
    guard: bool = True
    """The rewrite check (recast.refiner.check) guards the generator: an x' that answers,
    drifts or is degenerate is scored as x in the CMA-ES fitness (Eq. 11, Alg. 1), replaced by x as
    a pseudo-label x*, and sent as x at inference (`recast refine`, evaluation, serve). False is
    the paper (verdicts are still counted). See docs/method.md, "The rewrite guard"."""
    check_encoder: str | None = "minilm-l6"
    """Sentence encoder for the check's x-x' cosine, loaded once per process (None: the lexical
    check alone, which misses a few more drifts)."""
    decoding: str = "query"
    """How x' is decoded: 'query' stops at the end of the query (end of turn or a blank line),
    caps x' at max(decode_min_tokens, decode_length_factor·|x|) tokens and bans repeated
    decode_no_repeat_ngram-grams; 'paper' decodes until EOS or max_refined_tokens (Table 5).
    See docs/method.md, "Decoding x' to the end of the query"."""
    keep_input: bool = True
    """p_im reads and rewrites x's instruction alone; the input after its first blank line is
    appended to x' verbatim (recast.refiner.query). False: p_im reads and rewrites all of x (the
    paper), which a one-paragraph, length-capped x' cannot carry. See docs/method.md, "The input
    travels verbatim"."""
    decode_length_factor: float | None = 3.0
    """'query' decoding: x' gets at most this many times x's tokens (None: max_refined_tokens)."""
    decode_min_tokens: int = 16
    """'query' decoding: the length cap's floor (a short query may still gain a clause)."""
    decode_no_repeat_ngram: int = 4
    """'query' decoding: no token n-gram of x' twice (0: off)."""
    warm_start: bool = False
    """Start search and training from ρ_sft, the refiner fine-tuned on the teacher's checked
    rewrites (stage `warmstart`, as Align-Pro starts its prompter); False: from `model` (the
    paper). Off here because ρ_sft is a stage's output; params.yaml turns it on. See
    docs/method.md, "Warm start ρ_sft"."""
    warm_start_dir: str = "runs/warmstart"
    """Where the `warmstart` stage saves ρ_sft (refiner/) and its log."""
    warm_start_epochs: int = 4
    """Epochs over the kept teacher rewrites."""
    warm_start_lr: float = 5.0e-5
    """AdamW learning rate of the warm start (a few dozen pairs: higher than Eq. 12's 1e-5)."""


@dataclass(frozen=True)
class RedrawParams:
    """Redrawing x' at inference (`recast refine`, the evaluation's rewriting systems, serve):
    with refiner.guard, every x whose greedy x' the rewrite check does not call a rewrite gets
    sampled x' until it calls one a rewrite; if none is, the greedy x' and its verdict stand.
    The search and the pseudo-labels x* stay greedy. See docs/method.md, "Redrawing x'"."""

    n: int = 0
    """Most sampled x' per query (0: greedy only, the paper)."""
    temperature: float = 1.0
    """Sampling temperature of a redraw."""
    top_p: float = 0.95
    """Nucleus mass of a redraw."""
    seed: int = 0
    """The k-th redraw of a batch samples from a generator seeded by seed + k."""


@dataclass
class CmaesParams:
    """The CMA-ES search for ξ* (Eq. 9-11, 13-14; Table 5, 'CMA-ES' column)."""

    enabled: bool = True
    """False is Table 3's ablation: no search, pseudo-labels from the unbiased refiner."""
    d_z: int = 16
    """d_z, the evolution dimension per token; ξ ∈ R^{2·d_z} (Table 5: 16)."""
    iterations: int = 30
    """CMA-ES iterations (Table 5: 30)."""
    popsize: int | str = "paper"
    """λ: 'paper' (4 + ln 2d_z, §4), 'pycma' (4 + 3 ln 2d_z), or an integer ≥ 2."""
    delta_sigma: float = 0.001
    """δ(σ(g)) of Eq. 14, which sets the initial step size (the paper: 0.001)."""
    alpha: float = 1.0
    """α of Eq. 13 as a fraction of the special token's embedding norm (see bias.alphas)."""
    stop_on_flat_fitness: bool = True
    """Keep pycma's tolfun / flat-fitness stops (every candidate scoring the same ends the
    search early); False runs all `iterations` (the paper's stop criterion)."""
    max_target_tokens: int = 128
    """y is scored on at most this many tokens (Table 5: n_g = 128)."""
    batch_rows: int = 64
    """Most (candidate, sample) rows decoded together."""
    seed: int = 0
    """Seed of the projections A_i and of CMA-ES."""
    out_dir: str = "runs/search"
    """Round 1's search: checkpoint, ξ*, fitness curve (later rounds live under refiner.out_dir)."""


@dataclass
class TrackingParams:
    """MLflow lineage of training runs."""

    enabled: bool = True
    """Log runs to MLflow (False: nothing is logged)."""
    uri: str = "sqlite:///mlruns.db"
    """Tracking URI: a local SQLite file, or a server such as http://127.0.0.1:5000."""
    experiment: str = "recast"
    """One experiment per project."""
    artifacts: str = "mlartifacts"
    """Artifact folder for a new experiment ('' lets the server choose)."""
    log_checkpoints: bool = True
    """Log each round's refiner as an MLflow transformers model (hundreds of MB per round);
    needed by the registry (the last round's is registered)."""


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
    agreement_pairs: int = 20
    """Labelled pairs per source (BPO-test good/bad, HH-RLHF dev) to measure the judge on."""
    n_boot: int = 2000
    """Bootstrap resamples for the 95% intervals."""
    seed: int = 0
    out_dir: str = "reports/eval"


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


@dataclass
class RegistryParams:
    """Stage `promote`: the MLflow model registry's challenger / champion gate."""

    name: str = "recast-refiner"
    """Registered model name; every trained refiner becomes a version with alias 'challenger'."""
    prompter_name: str = "recast-prompter"
    """The same for Align-Pro prompters; their gate is the mean reward on the gate split's
    queries (higher is better)."""
    gate_split: str = "dev"
    """Split the challenger and the champion are compared on (train, es or dev)."""
    gate_metric: str = "dev_fitness"
    """'dev_fitness': mean CE of y_w given x' = p_im(x) under the generator (Eq. 11's F for the
    unbiased refiner, e^b without CMA-ES bias; not the search's ξ = 0), lower is better."""
    margin: float = 0.0
    """The challenger must beat the champion by more than this (nats for dev_fitness)."""
    max_pairs: int | None = 64
    """First N pairs of the gate split (None: all), to bound the gate's cost."""


@dataclass
class OrchestrationParams:
    """How Prefect runs the population's fitness evaluations and the evaluation sets."""

    runner: str = "local"
    """'local': in the flow's process (the population batched, the sets in turn); 'dask' or
    'ray': one Prefect task per candidate ξ and per evaluation set, mapped onto that cluster
    (prefect-dask / prefect-ray)."""
    address: str | None = None
    """Scheduler address of an existing cluster (dask: tcp://host:8786, ray: ray://host:10001);
    None starts a local cluster of `workers` processes."""
    workers: int = 2
    """Processes of the local cluster started when `address` is None."""


@dataclass
class ServeParams:
    """`recast serve`: the refiner as an OpenAI-compatible proxy in front of an LLM."""

    upstream: str = "local"
    """The LLM's OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1), or 'local': the
    generator section's model in this process."""
    checkpoint: str | None = None
    """The refiner: a folder or a registry URI (None: models:/<registry.name>@champion)."""
    host: str = "127.0.0.1"
    """Interface to bind; anything but loopback exposes the proxy, and the upstream key it holds."""
    port: int = 8100
    """TCP port."""
    max_batch: int = 8
    """Most queries refined in one batched decode."""
    batch_window_ms: float = 10.0
    """How long a batch's first query waits for others to join it."""
    max_queue: int = 64
    """Most queries waiting for the refiner; a request beyond this is answered 503."""
    upstream_timeout_s: float = 120.0
    """Seconds to wait for the upstream's answer (while streaming: between two chunks) -> 504."""
    api_key_env: str | None = None
    """Environment variable with the upstream's key, sent as a bearer token (None: none sent)."""
    forward_authorization: bool = False
    """Send the client's own Authorization header to the upstream (when api_key_env is None)."""
    reload_interval_s: float = 60.0
    """How often the registry alias is checked for a new champion (0: only on SIGHUP)."""
    return_refined: bool = False
    """Add {x, x', verdict} to every response (per request: header x-recast-return-refined: 1).
    The guard and the length of x' are the refiner section's (guard, max_refined_tokens)."""


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


@dataclass
class Params:
    """All of params.yaml."""

    ingest: IngestParams = field(default_factory=IngestParams)
    pairs: PairsParams = field(default_factory=PairsParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    split: SplitParams = field(default_factory=SplitParams)
    generator: GeneratorParams = field(default_factory=GeneratorParams)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    refiner: RefinerParams = field(default_factory=RefinerParams)
    redraw: RedrawParams = field(default_factory=RedrawParams)
    cmaes: CmaesParams = field(default_factory=CmaesParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)
    reward: RewardParams = field(default_factory=RewardParams)
    dpo: DpoParams = field(default_factory=DpoParams)
    bpo: BpoParams = field(default_factory=BpoParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    prompter: PrompterParams = field(default_factory=PrompterParams)
    registry: RegistryParams = field(default_factory=RegistryParams)
    orchestration: OrchestrationParams = field(default_factory=OrchestrationParams)
    serve: ServeParams = field(default_factory=ServeParams)
    main: MainParams = field(default_factory=MainParams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Check a YAML value against a field's annotation; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} is not a valid {_name(hint)}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {_name(hint)}, got {value!r}")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric key; each bound is inclusive unless marked open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is None:
            return f"{'<' if self.high_open else '≤'} {self.high:g}"
        if self.high is None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


COUNT = Range(1)  # sizes, steps, token budgets: a zero or negative one is never meant
NON_NEGATIVE = Range(0)  # seeds, retries, margins, weights where 0 switches a term off
POSITIVE = Range(0, low_open=True)  # learning rates, temperatures, time-outs
FRACTION = Range(0, 1, low_open=True, high_open=True)
PROBABILITY_MASS = Range(0, 1, low_open=True)  # top-p: 1 keeps every token

RANGES: dict[str, Range] = {
    "ingest.max_records": COUNT,
    "pairs.min_prompt_tokens": NON_NEGATIVE,
    "pairs.max_prompt_tokens": COUNT,
    "pairs.max_response_tokens": COUNT,
    "pairs.max_context_turns": NON_NEGATIVE,
    "validate.max_prompt_chars": COUNT,
    "validate.max_response_chars": COUNT,
    "split.seed": NON_NEGATIVE,
    "split.es_size": COUNT,
    "split.dev_fraction": FRACTION,
    "generator.batch_size": COUNT,
    "generator.max_batch_tokens": COUNT,
    "generator.max_length": COUNT,
    "generator.timeout_s": POSITIVE,
    "generator.max_retries": NON_NEGATIVE,
    "generator.backoff_s": NON_NEGATIVE,
    "generator.concurrency": COUNT,
    "sampling.max_new_tokens": COUNT,
    "sampling.temperature": NON_NEGATIVE,
    "sampling.top_p": PROBABILITY_MASS,
    "sampling.top_k": NON_NEGATIVE,
    "sampling.seed": NON_NEGATIVE,
    "refiner.rounds": COUNT,
    "refiner.epochs": COUNT,
    "refiner.lr": POSITIVE,
    "refiner.batch_size": COUNT,
    "refiner.omega": NON_NEGATIVE,
    "refiner.max_refined_tokens": COUNT,
    "refiner.truth_max_tokens": COUNT,
    "refiner.max_prompt_tokens": COUNT,
    "refiner.train_size": COUNT,
    "refiner.lora_r": COUNT,
    "refiner.seed": NON_NEGATIVE,
    "refiner.decode_length_factor": POSITIVE,
    "refiner.decode_min_tokens": COUNT,
    "refiner.decode_no_repeat_ngram": NON_NEGATIVE,
    "refiner.warm_start_epochs": COUNT,
    "refiner.warm_start_lr": POSITIVE,
    "redraw.n": NON_NEGATIVE,
    "redraw.temperature": POSITIVE,
    "redraw.top_p": PROBABILITY_MASS,
    "redraw.seed": NON_NEGATIVE,
    "cmaes.d_z": COUNT,
    "cmaes.iterations": COUNT,
    "cmaes.popsize": Range(2),  # CMA-ES recombines the best half: at least two candidates
    "cmaes.delta_sigma": POSITIVE,
    "cmaes.alpha": POSITIVE,
    "cmaes.max_target_tokens": COUNT,
    "cmaes.batch_rows": COUNT,
    "cmaes.seed": NON_NEGATIVE,
    "reward.train_size": COUNT,
    "reward.epochs": COUNT,
    "reward.lr": POSITIVE,
    "reward.head_epochs": COUNT,
    "reward.head_lr": POSITIVE,
    "reward.batch_size": COUNT,
    "reward.max_length": COUNT,
    "reward.seed": NON_NEGATIVE,
    "dpo.train_size": COUNT,
    "dpo.epochs": COUNT,
    "dpo.lr": POSITIVE,
    "dpo.beta": POSITIVE,
    "dpo.batch_size": COUNT,
    "dpo.max_length": COUNT,
    "dpo.seed": NON_NEGATIVE,
    "bpo.train_size": COUNT,
    "bpo.max_new_tokens": COUNT,
    "bpo.epochs": COUNT,
    "bpo.lr": POSITIVE,
    "bpo.batch_size": COUNT,
    "bpo.max_length": COUNT,
    "bpo.seed": NON_NEGATIVE,
    "evaluate.max_prompts": COUNT,
    "evaluate.max_new_tokens": COUNT,
    "evaluate.temperature": NON_NEGATIVE,
    "evaluate.bon_n": COUNT,
    "evaluate.sr_n": COUNT,
    "evaluate.sr_alpha": FRACTION,
    "evaluate.sr_chunk": COUNT,
    "evaluate.judge_max_new_tokens": COUNT,
    "evaluate.judge_tie_margin": Range(0, 1),  # a difference of two probabilities
    "evaluate.agreement_pairs": NON_NEGATIVE,
    "evaluate.n_boot": COUNT,
    "evaluate.seed": NON_NEGATIVE,
    "prompter.lam": NON_NEGATIVE,
    "prompter.lambdas": NON_NEGATIVE,  # each λ of the sweep
    "prompter.steps": COUNT,
    "prompter.oracle_steps": COUNT,
    "prompter.lr": POSITIVE,
    "prompter.num_generations": Range(2),  # GRPO's baseline is the group's mean reward
    "prompter.max_new_tokens": COUNT,
    "prompter.temperature": POSITIVE,
    "prompter.answer_tokens": COUNT,
    "prompter.eval_temperature": POSITIVE,
    "prompter.eval_top_p": PROBABILITY_MASS,
    "prompter.eval_top_k": NON_NEGATIVE,
    "prompter.train_size": COUNT,
    "prompter.dev_size": COUNT,
    "prompter.seed": NON_NEGATIVE,
    "registry.margin": NON_NEGATIVE,
    "registry.max_pairs": COUNT,
    "orchestration.workers": COUNT,
    "main.examples": NON_NEGATIVE,
    "main.width": Range(60),
}
"""Range of every numeric key that has one (None, where a key allows it, is always fine)."""
POPSIZE_RULES = ("paper", "pycma")
DECODING_RULES = ("paper", "query")


def parse_popsize(value: int | str) -> int | str:
    """cmaes.popsize in one of its two forms: an integer λ, or the name of a rule (POPSIZE_RULES).
    An integer given as text ('12', as YAML quotes it) is that integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text in POPSIZE_RULES:
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"cmaes.popsize={value!r} is not allowed: it must be "
            f"{' or '.join(repr(r) for r in POPSIZE_RULES)}, or an integer ≥ 2"
        ) from None


def check_ranges(params: Params) -> None:
    """Raise ConfigError naming the first key whose value is outside its range, with the value
    as given and the range allowed (e.g. `split.es_size=-5`), before any stage spends time."""
    if params.refiner.decoding not in DECODING_RULES:
        raise ConfigError(
            f"refiner.decoding={params.refiner.decoding!r} is not allowed: it must be "
            f"{' or '.join(repr(r) for r in DECODING_RULES)}"
        )
    for key, allowed in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if isinstance(item, int | float) and not isinstance(item, bool) and item not in allowed:
                where = key if index is None else f"{key}[{index}]"
                raise ConfigError(f"{where}={item!r} is out of range: it must be {allowed}")


def _section(cls: type, raw: Any, name: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"params section '{name}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown params key '{name}.{key}' (known keys of '{name}': {sorted(known)})"
            )
    values = {k: _check_type(v, hints[k], f"{name}.{k}") for k, v in raw.items()}
    return cls(**values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'section.key=value' -> (['section', 'key'], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, raw_value = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) != 2 or not all(path):
        raise ConfigError(f"--set key must be section.key, got {key!r}")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {raw_value!r}: {e}") from e
    return path, value


def load_params(path: str | Path | None = "params.yaml", overrides: list[str] = ()) -> Params:
    """Read the params file, apply --set overrides, check every key. A missing file is an
    error, ./params.yaml included: silently running on the built-in defaults (the paper's
    sizes) from the wrong folder would start hours of work nobody asked for. `path=None`
    asks for the defaults on purpose (tests, the library's own callers)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            where = f" in {Path.cwd()}" if not p.is_absolute() else ""
            raise ConfigError(
                f"params file not found: {p}{where} (run from the repository root, or pass "
                "--params PATH)"
            )
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
    for text in overrides:
        (section, key), value = parse_override(text)
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        raw[section][key] = value
    fields = {f.name: f for f in dataclasses.fields(Params)}
    for name in raw:
        if name not in fields:
            raise ConfigError(f"unknown params section '{name}' (known: {sorted(fields)})")
    hints = typing.get_type_hints(Params)
    params = Params(**{name: _section(hints[name], raw.get(name), name) for name in fields})
    params.cmaes.popsize = parse_popsize(params.cmaes.popsize)
    check_ranges(params)
    return params


def section_dict(section: Any) -> dict[str, Any]:
    return dataclasses.asdict(section)
