"""The data stages' params sections (`ingest`, `pairs`, `validate`, `split`), beside the
code that reads them (recast.data).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass, field

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
