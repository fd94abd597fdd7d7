"""The refiner's params sections (`refiner`, `redraw`), beside p_im's code.

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass


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
