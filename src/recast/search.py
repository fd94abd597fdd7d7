"""CMA-ES over ξ with the black-box generator's cross-entropy as fitness (Eq. 11, Algorithm 1).

The ask/tell loop, stated plainly:

    ξ_j ~ m + σ N(0, C), j = 1..λ                         (Eq. 10)
    F(ξ_j) = 1/|D_es| Σ_{(x,y)∈D_es} CE(f(p_im(x; ξ_j)), y)   (Alg. 1, lines 13-17)
    m, σ, C <- tell(ξ, F)
    ξ* = argmin F                                          (Eq. 11)

With a guard (refiner.guard, recast.refiner.refine.Guard), an x' that the rewrite check finds
harmful (it answers x, drifts from it or is degenerate) is scored as x itself: pasting content of
y into x' then buys nothing (see docs/method.md, "The rewrite guard"). The verdicts of every
candidate's x' are counted either way.

The state (pycma's object and numpy's global RNG, which pycma samples from) is checkpointed
after every iteration, so `resume` continues exactly where a killed run stopped.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recast import io
from recast.errors import RecastError
from recast.generator.base import Generator
from recast.records import PreferencePair
from recast.refiner import bias
from recast.refiner.model import PAPER, Decoding, Prefix, Refiner, cross_entropy
from recast.refiner.prompts import p_x
from recast.refiner.refine import Guard
from recast.search_config import CmaesParams

STATE = "state.pkl"
"""The checkpoint of a search still running: deleted once the search has finished, when
result.json holds everything a reader needs (pycma pickles its own timers, so the checkpoint's
bytes would differ on every run and DVC would see a new output for the same inputs)."""
RESULT = "result.json"


class SearchError(RecastError):
    """The search cannot run or resume (empty D_es, NaN fitness, foreign checkpoint)."""


@dataclass
class Space:
    """Everything Init() of Algorithm 1 fixes for one search: e^b, ∇e^b, A, α, σ_0."""

    e_base: torch.Tensor
    grads: torch.Tensor
    a: torch.Tensor
    alpha: torch.Tensor
    sigma0: float
    popsize: int

    def embeddings(self, xi: np.ndarray) -> torch.Tensor:
        return bias.embeddings(xi, self.e_base, self.a, self.grads, self.alpha)

    def fingerprint(self) -> str:
        tensors = (self.e_base, self.grads, self.a, self.alpha)
        blobs = [t.detach().cpu().numpy().tobytes() for t in tensors]
        return io.digest_bytes(*blobs, repr((self.sigma0, self.popsize)).encode())


def truncate(refiner: Refiner, text: str, max_tokens: int) -> str:
    """y cut to `max_tokens` refiner tokens (the generator's tokenizer is not ours to see)."""
    ids = refiner.tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else refiner.tokenizer.decode(ids[:max_tokens])


def gradient(refiner: Refiner, pairs: list[PreferencePair], params: CmaesParams) -> torch.Tensor:
    """∇e_i^b of Eq. 13: d CE(p_im(x), y) / d e_i^b over D_es, every other weight frozen.

    y (the chosen answer) is teacher-forced after [Z_s] z [Z_e]; returns (2, d)."""
    e_base = refiner.base_embeddings().detach()
    delta = torch.zeros_like(e_base, requires_grad=True)
    chunk = max(1, params.batch_rows // 4)
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        targets = [refiner.target_ids(p.chosen, params.max_target_tokens) for p in part]
        logits, valid = refiner.target_logits(
            [p_x(refiner.reads(p.prompt)) for p in part], targets, e_base + delta
        )
        loss = cross_entropy(logits, targets, valid) * len(part) / len(pairs)
        loss.backward()  # only `delta` requires grad: the model's weights stay frozen
    grads = delta.grad.detach()
    if not torch.isfinite(grads).all() or (grads.norm(dim=-1) == 0).any():
        raise SearchError("∇e^b is zero or not finite: the refiner cannot be searched")
    return grads


def make_space(refiner: Refiner, pairs: list[PreferencePair], params: CmaesParams) -> Space:
    """Init() of Algorithm 1 for one search."""
    with torch.enable_grad():
        for p in refiner.model.parameters():
            p.requires_grad_(False)
        grads = gradient(refiner, pairs, params)
    e_base = refiner.base_embeddings().detach().float()
    grads = grads.float()
    a = bias.projections(grads, params.d_z, params.seed)
    rule = params.popsize  # an integer ≥ 2, 'paper' or 'pycma' (load_params checks it)
    popsize = rule if isinstance(rule, int) else bias.popsize(params.d_z, rule)
    return Space(
        e_base=e_base,
        grads=grads,
        a=a,
        alpha=bias.alphas(e_base, grads, params.alpha),
        sigma0=bias.initial_sigma(a, grads, params.delta_sigma),
        popsize=popsize,
    )


class Fitness:
    """F(ξ) for a population at once: refiner decoding batched across candidates and samples
    over a shared prefix cache, generator scoring batched, and repeated (x', y) never rescored."""

    def __init__(
        self,
        refiner: Refiner,
        generator: Generator,
        pairs: list[PreferencePair],
        space: Space | None,
        params: CmaesParams,
        max_refined_tokens: int,
        guard: Guard | None = None,
    ) -> None:
        """`space` None: only `score_embeddings` can be called (no ξ to map). `guard` None: x'
        is scored whatever it is and nothing is checked (the paper)."""
        if not pairs:
            raise SearchError("D_es is empty: nothing to compute the fitness on")
        self.refiner, self.generator, self.space = refiner, generator, space
        self.max_refined_tokens = max_refined_tokens
        self.guard = guard
        self.queries = [p.prompt for p in pairs]
        self.targets = [truncate(refiner, p.chosen, params.max_target_tokens) for p in pairs]
        self.samples_per_chunk = max(1, params.batch_rows // (space.popsize if space else 1))
        with torch.inference_mode():  # the ξ-independent prefixes, once per search
            read = [refiner.reads(x) for x in self.queries]
            self.prefixes: list[Prefix] = [
                refiner.encode_prefix(
                    [p_x(r) for r in read[s : s + self.samples_per_chunk]],
                    queries=read[s : s + self.samples_per_chunk],
                )
                for s in range(0, len(pairs), self.samples_per_chunk)
            ]
        self.cache: dict[tuple[str, int], float] = {}
        self.evaluations = 0

    def refine(self, e: torch.Tensor) -> list[list[str]]:
        """x' = p_im(x; e) for every candidate's (e_0, e_1) in e (C, 2, d) (outer list) and every
        sample (inner list)."""
        c = e.shape[0]
        out: list[list[str]] = [[] for _ in range(c)]
        for prefix in self.prefixes:
            n = prefix.mask.shape[0]
            # rows are sample-major (s0c0 s0c1 … s1c0 …): repeat_interleave of the prefix
            texts = self.refiner.decode(
                prefix.repeat(c), e.repeat(n, 1, 1), self.max_refined_tokens
            )
            for row, text in enumerate(texts):
                out[row % c].append(text)
        return [
            [self.refiner.completes(x, t) for x, t in zip(self.queries, cand, strict=True)]
            for cand in out
        ]

    def __call__(self, xis: list[np.ndarray]) -> list[float]:
        """F(ξ) (Eq. 11, Alg. 1 lines 13-17) for each candidate ξ, through Eq. 9's embeddings."""
        if self.space is None:
            raise SearchError("this Fitness has no search space: call score_embeddings")
        return self.score_embeddings(self.space.embeddings(np.stack(xis)))

    def score_embeddings(self, e: torch.Tensor) -> list[float]:
        """Mean CE of y under the generator given x' decoded with [Z_s], [Z_e] embedded as e."""
        refined = self.refine(e)
        if self.guard is not None:  # what the generator sees: x for a harmful x'
            refined = [self.guard.apply(self.queries, cand)[0] for cand in refined]
        todo = sorted({(x, i) for cand in refined for i, x in enumerate(cand)} - set(self.cache))
        if todo:
            scores = self.generator.score([x for x, _ in todo], [self.targets[i] for _, i in todo])
            self.cache.update(zip(todo, scores, strict=True))
        self.evaluations += len(refined) * len(self.targets)
        values = [float(np.mean([self.cache[(x, i)] for i, x in enumerate(c)])) for c in refined]
        if not all(np.isfinite(values)):
            raise SearchError(f"non-finite fitness {values}: the generator returned a bad score")
        return values


@dataclass
class SearchResult:
    """What one search leaves behind (also written as JSON beside the checkpoint)."""

    xi_star: list[float]
    best_fitness: float
    fitness_at_zero: float
    iterations: int
    stop: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0
    """Wall time of this call (a resumed search counts from the resume). Clock readings stay
    out of result.json and the checkpoint, so the same inputs write the same bytes."""
    checks: dict[str, int] = field(default_factory=dict)
    """The rewrite check's verdicts on every candidate x' scored here (check_<verdict>,
    check_total); empty without a guard, zeros where a fan-out scored the candidates."""


def run_search(
    refiner: Refiner,
    generator: Generator,
    es_pairs: list[PreferencePair],
    params: CmaesParams,
    out_dir: str | Path,
    max_refined_tokens: int,
    resume: bool = True,
    on_iteration: Callable[[dict[str, float]], None] = lambda _: None,
    evaluator: Callable[[Space], Callable[[list[np.ndarray]], list[float]]] | None = None,
    guard: Guard | None = None,
) -> tuple[SearchResult, Space]:
    """CMA-ES for ξ*, checkpointed after each iteration in `out_dir`; returns (result, space).

    `evaluator` (see recast.distributed) scores each population elsewhere, candidate by
    candidate; by default the population is scored here, batched. `guard` scores a harmful x'
    as x (None: the paper's fitness)."""
    import cma

    if not es_pairs:
        raise SearchError("D_es is empty: nothing to compute the fitness on")
    out = Path(out_dir)
    space = make_space(refiner, es_pairs, params)
    config = _config_hash(
        space,
        params,
        es_pairs,
        generator,
        max_refined_tokens,
        guard,
        refiner.decoding,
        refiner.keep_input,
    )
    fitness = Fitness(refiner, generator, es_pairs, space, params, max_refined_tokens, guard)
    score = evaluator(space) if evaluator else fitness
    state = _load_state(out / STATE, config) if resume else None
    if state is None and resume and (finished := _load_result(out / RESULT, config)):
        return finished, space  # a finished search is only read (train's round 1)
    if state is None:
        np.random.seed(params.seed)
        # pycma samples from numpy's global RNG and reads seed 0 as "seed from the clock":
        # numpy is seeded above, and nan tells pycma to leave it alone.
        options: dict[str, Any] = {
            "popsize": space.popsize,
            "seed": np.nan,
            "maxiter": params.iterations,
            "verbose": -9,
        }
        if not params.stop_on_flat_fitness:
            options.update(tolfun=0, tolfunhist=0, tolflatfitness=params.iterations + 1)
        es = cma.CMAEvolutionStrategy(np.zeros(2 * params.d_z), space.sigma0, options)
        state = {
            "config": config,
            "es": es,
            "history": [],
            "evaluations": 0,
            "fitness_at_zero": score([np.zeros(2 * params.d_z)])[0],
        }
        _save_state(out / STATE, state, fitness.cache)
    else:
        es = state["es"]
        np.random.set_state(state["rng"])
        # The scored (x', y) pairs travel with the checkpoint: the resumed run then scores the
        # same batches as an uninterrupted one, so even float rounding matches.
        fitness.cache = state["cache"]
        if guard is not None:
            guard.counts.update(state.get("checks", {}))
    start = time.perf_counter()
    while not es.stop():
        t0 = time.perf_counter()
        xis = es.ask()
        values = score(xis)
        es.tell(xis, values)
        # the speed is for progress lines only: a fact of this run, not of the inputs
        samples_per_s = len(xis) * len(es_pairs) / (time.perf_counter() - t0)
        row = {
            "iteration": es.countiter,
            "best": float(min(values)),
            "mean": float(np.mean(values)),
            "sigma": float(es.sigma),
            "best_so_far": float(es.result.fbest),
        }
        state["history"].append(row)
        state["evaluations"] += len(xis) * len(es_pairs)
        if guard is not None:
            state["checks"] = dict(guard.counts)
        _save_state(out / STATE, state, fitness.cache)
        on_iteration({**row, "samples_per_s": samples_per_s})
    result = SearchResult(
        xi_star=[float(v) for v in es.result.xbest],
        best_fitness=float(es.result.fbest),
        fitness_at_zero=state["fitness_at_zero"],
        iterations=es.countiter,
        stop={k: _plain(v) for k, v in es.stop().items()},
        history=state["history"],
        evaluations=state["evaluations"],
        seconds=time.perf_counter() - start,
        checks=guard.flagged() if guard is not None else {},
    )
    written = {k: v for k, v in asdict(result).items() if k != "seconds"}  # a clock reading
    io.write_json(out / RESULT, {"config": config, **written})
    (out / STATE).unlink(missing_ok=True)  # after result.json: a kill in between loses nothing
    return result, space


def _plain(v: Any) -> Any:
    """pycma's stop values as JSON-friendly scalars."""
    if hasattr(v, "item"):
        return v.item()
    return v if isinstance(v, int | float | str) else str(v)


def _config_hash(
    space: Space,
    params: CmaesParams,
    pairs: list[PreferencePair],
    generator: Generator,
    max_refined_tokens: int,
    guard: Guard | None = None,
    decoding: Decoding = PAPER,
    keep_input: bool = False,
) -> str:
    """What a checkpoint must match to be resumed: the refiner (through e^b, ∇e^b), D_es, the
    CMA-ES settings, the generator, the guard (an unguarded search keeps its old hash), the
    decoding rule of x' and whether x' carries x's input (refiner.keep_input)."""
    gen = getattr(generator, "params", None)
    parts: dict[str, Any] = {
        "space": space.fingerprint(),
        # where the search is written is not what it searched: a moved folder still resumes
        "params": {k: v for k, v in asdict(params).items() if k != "out_dir"},
        "pairs": [p.id for p in pairs],
        "max_refined": max_refined_tokens,
        "generator": asdict(gen) if gen is not None else type(generator).__name__,
    }
    if guard is not None and guard.enabled:
        parts["guard"] = guard.key()
    if decoding != PAPER:  # a paper-decoded search keeps its old hash
        parts["decoding"] = asdict(decoding)
    if keep_input:
        parts["keep_input"] = True
    return io.digest(parts, default=str)


def _save_state(path: Path, state: dict[str, Any], cache: dict[tuple[str, int], float]) -> None:
    state = {**state, "rng": np.random.get_state(), "cache": cache}
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(state))


def _load_result(path: Path, config: str) -> SearchResult | None:
    """The finished search in result.json, if there is one; refused if another configuration
    wrote it."""
    if not path.exists():
        return None
    found = io.read_json(path)
    if found.pop("config", None) != config:
        raise SearchError(
            f"{path} holds a search of a different configuration (refiner, D_es, cmaes params or "
            "generator changed), or one from an older recast: delete its folder to search anew"
        )
    return SearchResult(**found)


def _load_state(path: Path, config: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = pickle.loads(path.read_bytes())
    except Exception as e:  # a truncated or foreign file: say so, never start over silently
        raise SearchError(
            f"{path}: unreadable CMA-ES checkpoint ({e}); delete it to restart"
        ) from e
    if state.get("config") != config:
        raise SearchError(
            f"{path} was written by a different configuration (refiner, D_es, cmaes params or "
            "generator changed): delete it or its folder to start a new search"
        )
    return state
