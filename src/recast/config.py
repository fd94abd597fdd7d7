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

from recast.alignpro_config import PrompterParams
from recast.data.config import (
    EVAL_SETS,
    TRAINING_SOURCES,
    IngestParams,
    PairsParams,
    SplitParams,
    ValidateParams,
)
from recast.distributed_config import OrchestrationParams
from recast.errors import ConfigError
from recast.evaluation.config import BpoParams, DpoParams, EvaluateParams, MainParams, RewardParams
from recast.generator.config import GeneratorParams, SamplingParams
from recast.promotion_config import RegistryParams
from recast.refiner.config import RedrawParams, RefinerParams
from recast.search_config import CmaesParams
from recast.serve.config import ServeParams
from recast.tracking_config import TrackingParams

__all__ = [
    "EVAL_SETS",
    "RANGES",
    "TRAINING_SOURCES",
    "BpoParams",
    "CmaesParams",
    "DpoParams",
    "EvaluateParams",
    "GeneratorParams",
    "IngestParams",
    "MainParams",
    "OrchestrationParams",
    "PairsParams",
    "Params",
    "PrompterParams",
    "Range",
    "RedrawParams",
    "RefinerParams",
    "RegistryParams",
    "RewardParams",
    "SamplingParams",
    "ServeParams",
    "SplitParams",
    "TrackingParams",
    "ValidateParams",
    "check_ranges",
    "load_params",
    "parse_override",
    "parse_popsize",
    "section_dict",
]


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
    "prompter.steps_per_generation": Range(1),
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
