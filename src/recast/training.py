"""Algorithm 1: S rounds of CMA-ES search -> pseudo-labels x* -> fine-tuning with Eq. 12.

    x* = p_im(x; ξ*)                                   (Eq. 11), for every x in D
    l_rm = CE(p_im(x), x*) + ω · KL(p_im ‖ q_im)        (Eq. 12), on the x* tokens

q_im reads P_xy(x, y) (Table 1 with §4's truth template) and is a frozen copy of p_im taken at
the start of the round (the paper's target network).

x* is decoded through the one refine path (recast.refiner.refine) and checked; with
refiner.guard a harmful x* (it answers x, drifts or is degenerate) is replaced by x, and the
search scores a harmful candidate x' as x (see recast.search). Both are counted per verdict in
each round's metrics.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from recast import io, layout
from recast.config import Params
from recast.distributed import MapFn, population_evaluator
from recast.generator.base import Generator
from recast.records import PreferencePair
from recast.refiner.config import RefinerParams
from recast.refiner.model import Refiner, cross_entropy
from recast.refiner.prompts import p_x, p_xy
from recast.refiner.refine import Guard, Refined, refine
from recast.search import Fitness, SearchResult, Space, run_search, truncate
from recast.tracking import Tracker

PSEUDO_SCHEMA = pa.schema(
    [("id", pa.string()), ("x", pa.string()), ("x_star", pa.string()), ("verdict", pa.string())]
)


def pseudo_labels(
    refiner: Refiner,
    pairs: list[PreferencePair],
    e: torch.Tensor,
    max_tokens: int,
    batch: int = 32,
    progress: Callable[[int], None] = lambda _: None,
    *,
    guard: bool = False,
    check_encoder: str | None = None,
) -> list[Refined]:
    """x* = p_im(x; ξ*) for every x (Eq. 11), greedy, batched, through the refine path: with
    `guard` a harmful x* falls back to x (the `sent` of each Refined is then the label)."""
    return refine(
        refiner,
        [p.prompt for p in pairs],
        max_tokens,
        guard=guard,
        batch_size=batch,
        on_batch=progress,
        embeddings=e,
        check_encoder=check_encoder,
    )


def kl_p_q(p_logits: torch.Tensor, q_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """KL(p_im ‖ q_im) = Σ_v p log(p / q) per x' position, averaged over valid positions."""
    log_p = F.log_softmax(p_logits, -1)
    log_q = F.log_softmax(q_logits, -1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    return (per_token * valid).sum() / valid.sum()


@dataclass
class StepStats:
    step: int
    epoch: int
    loss: float
    ce: float
    kl: float


def finetune(
    refiner: Refiner,
    q_im: Refiner,
    pairs: list[PreferencePair],
    x_star: list[str],
    rp: RefinerParams,
    on_step: Callable[[StepStats], None] = lambda _: None,
) -> list[StepStats]:
    """Minimize Eq. 12 with AdamW over D (Table 5: lr 1e-5, batch 8, 3 epochs, ω = 0.02).

    `q_im` is the frozen target network that reads P_xy(x, y) (Eq. 6-7); `x_star` are the
    pseudo-labels the CE term fits; `rp` gives ω, lr, batch size, epochs and LoRA."""
    refiner.source = None  # the weights are about to differ from any saved copy
    model = refiner.model
    if rp.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=rp.lora_r, lora_alpha=2 * rp.lora_r, target_modules="all-linear")
        )
        refiner.model = model
    if not rp.lora:  # peft already froze the base weights and left the adapters trainable
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=rp.lr)
    # p_im is trained to write the part of x* that it decodes (with keep_input: not x's input)
    targets = [
        refiner.target_ids(refiner.writes(p.prompt, x), rp.max_refined_tokens)
        for p, x in zip(pairs, x_star, strict=True)
    ]
    q_prompts = [
        p_xy(
            refiner.reads(p.prompt),
            truncate(refiner, p.chosen, rp.truth_max_tokens),
            truncate(refiner, p.rejected, rp.truth_max_tokens),
        )
        for p in pairs
    ]
    order = list(range(len(pairs)))
    rng = random.Random(rp.seed)
    stats: list[StepStats] = []
    for epoch in range(rp.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), rp.batch_size):
            idx = order[start : start + rp.batch_size]
            tgt = [targets[i] for i in idx]
            logits, valid = refiner.target_logits(
                [p_x(refiner.reads(pairs[i].prompt)) for i in idx], tgt, refiner.base_embeddings()
            )
            ce = cross_entropy(logits, tgt, valid)
            kl = torch.zeros(())
            if rp.omega > 0:
                with torch.no_grad():
                    q_logits, _ = q_im.target_logits(
                        [q_prompts[i] for i in idx], tgt, q_im.base_embeddings()
                    )
                kl = kl_p_q(logits, q_logits, valid)
            loss = ce + rp.omega * kl
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite loss at epoch {epoch}, step {len(stats)}")
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            row = StepStats(len(stats) + 1, epoch + 1, loss.item(), ce.item(), kl.item())
            stats.append(row)
            on_step(row)
    if rp.lora:
        refiner.model = model.merge_and_unload()
    refiner.model.eval()
    for p in refiner.model.parameters():
        p.requires_grad_(False)
    return stats


def save_refiner(refiner: Refiner, path: Path) -> None:
    """model + tokenizer (with [Z_s], [Z_e]) as a HF folder, replaced whole or not at all."""
    io.save_pretrained(refiner.model, refiner.tokenizer, path)
    refiner.source = str(path)


def dev_fitness(
    refiner: Refiner,
    generator: Generator,
    dev: list[PreferencePair],
    space: Space,
    params: Params,
    xi_star: np.ndarray,
) -> dict[str, float]:
    """F(0) and F(ξ*) on the held-out dev split: a drop on D_es alone would be overfitting."""
    fit = Fitness(
        refiner,
        generator,
        dev,
        space,
        params.cmaes,
        params.refiner.max_refined_tokens,
        Guard.from_params(params.refiner),
    )
    at_zero, at_star = fit([np.zeros_like(xi_star), xi_star])
    return {"dev_fitness_at_zero": at_zero, "dev_fitness_at_xi_star": at_star}


DEV_FITNESS = "dev_fitness.json"
"""Beside a search's checkpoint: F(0) and F(ξ*) on dev for that search's refiner and ξ*."""


def dev_fitness_cached(
    refiner: Refiner,
    generator: Generator,
    dev: list[PreferencePair],
    space: Space,
    params: Params,
    xi_star: np.ndarray,
    search_dir: Path,
    save: bool = True,
) -> dict[str, float]:
    """dev_fitness, read from search_dir when the same ξ* was scored on the same dev pairs
    there: round 1 of `train` and of each ablation starts from the refiner the `search` stage
    searched with, and scoring 2 x |dev| queries again cost as much as the search itself.
    `save` False leaves search_dir as it is (round 1: it is the `search` stage's output)."""
    path = search_dir / DEV_FITNESS
    key = {"xi_star": [float(v) for v in xi_star], "dev": [p.id for p in dev]}
    if path.exists():
        saved = io.read_json(path)
        if saved.get("key") == key:
            return saved["fitness"]
    fitness = dev_fitness(refiner, generator, dev, space, params, xi_star)
    if save:
        io.write_json(path, {"key": key, "fitness": fitness})
    return fitness


@dataclass
class Reporter:
    """Callbacks the CLI uses for live progress (all optional)."""

    round_start: Callable[[int], None] = lambda _: None
    iteration: Callable[[int, dict[str, float]], None] = lambda r, row: None
    step: Callable[[int, StepStats], None] = lambda r, s: None
    message: Callable[[str], None] = lambda _: None


def system_name(params: Params) -> str:
    """'ours', or the ablation variant these params train: 'no-cmaes' (Table 3), 'omega-0'
    (Figure 3), as recast.layout.ABLATIONS names them."""
    if not params.cmaes.enabled:
        return "no-cmaes"
    return "ours" if params.refiner.omega > 0 else "omega-0"


@dataclass
class Trained:
    """What Algorithm 1 returns: the per-round summary (what follows from the inputs), the MLflow
    URI of the last round's refiner (None without tracking), which the `train` stage registers
    as the challenger, and the facts of this run: its MLflow run id and each round's seconds."""

    summary: dict[str, Any]
    model_uri: str | None = None
    run_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    """round-<s> and round-<s>/search: wall time of the round and of its CMA-ES search (this
    call's: a round done earlier is not in it)."""


def train(
    params: Params,
    refiner: Refiner,
    generator: Generator,
    train_pairs: list[PreferencePair],
    es_pairs: list[PreferencePair],
    dev_pairs: list[PreferencePair],
    report: Reporter | None = None,
    resume: bool = True,
    tracker: Tracker | None = None,
    inputs: dict[str, Path] | None = None,
    fan_out: MapFn | None = None,
) -> Trained:
    """Algorithm 1's outer loop. Each round keeps ξ*, its fitness curve, the pseudo-labels and a
    checkpoint under refiner.out_dir/round-<s>; round 1's search lives in cmaes.out_dir so that
    the DVC `search` stage's output is reused, not recomputed. With tracking on, an MLflow parent
    run holds a nested run per round, itself holding one per CMA-ES search. `fan_out` spreads
    each population's fitness over workers (recast.distributed)."""
    report = report or Reporter()
    tracker = tracker or Tracker(params)
    rp = params.refiner
    out = Path(rp.out_dir)
    pairs = train_pairs[: rp.train_size] if rp.train_size else train_pairs
    summary: dict[str, Any] = {"rounds": []}
    model_uri: str | None = None
    seconds: dict[str, float] = {}
    loop = _Loop(params, generator, pairs, es_pairs, dev_pairs, report, resume, tracker, fan_out)
    # the system and seed in the name, so runs read apart in the MLflow UI's comparisons
    system = system_name(params)
    name = f"train {system} seed={rp.seed}"
    tags = {**tracker.lineage_tags(inputs or {}), "system": system, "seed": str(rp.seed)}
    with tracker.run(name, tags=tags) as run_id:
        tracker.log_datasets(inputs or {})
        tracker.log_params(asdict(params))
        for s in range(1, rp.rounds + 1):
            report.round_start(s)
            round_dir = layout.round_dir(out, s)
            done = round_dir / "round.json"
            with tracker.run(f"round-{s}", tags={"round": str(s)}):
                if resume and done.exists():
                    row = io.read_json(done)
                    refiner = Refiner.from_params(str(layout.refiner_dir(out, s)), rp)
                    report.message(f"round {s}: done earlier, loaded {layout.refiner_dir(out, s)}")
                else:
                    t0 = time.perf_counter()
                    row, search_seconds = _round(s, refiner, loop)
                    seconds[f"round-{s}"] = time.perf_counter() - t0
                    if search_seconds is not None:
                        seconds[f"round-{s}/search"] = search_seconds
                    tracker.log_metrics({"seconds": seconds[f"round-{s}"]})
                tracker.log_metrics({k: v for k, v in row.items() if k != "round"})
                if params.tracking.log_checkpoints:
                    model_uri = tracker.log_refiner(
                        refiner.model, refiner.tokenizer, layout.refiner_dir(out, s)
                    )
            summary["rounds"].append(row)
        summary["config"] = config_hash(params)
    return Trained(summary, model_uri, run_id, seconds)


TRAINED_BY = ("refiner", "cmaes", "generator")
"""The params sections Algorithm 1 reads: the `train` stage's declared params in dvc.yaml."""


def config_hash(params: Params) -> str:
    """The digest of the sections training reads (TRAINED_BY), written to summary.json. A digest
    of all params changed with any section (evaluate.*), so a clone that retrained an up-to-date
    `train` wrote another summary.json than the lock records."""
    return io.digest({name: asdict(getattr(params, name)) for name in TRAINED_BY})


@dataclass
class _Loop:
    """What stays the same across Algorithm 1's rounds."""

    params: Params
    generator: Generator
    pairs: list[PreferencePair]
    """D (the first refiner.train_size pairs): the x that get pseudo-labels x*."""
    es_pairs: list[PreferencePair]
    """D_es: the pairs the fitness F (Eq. 11) is averaged over in the search."""
    dev_pairs: list[PreferencePair]
    report: Reporter
    resume: bool
    tracker: Tracker
    fan_out: MapFn | None


def _round(s: int, refiner: Refiner, loop: _Loop) -> tuple[dict[str, Any], float | None]:
    """One round: search -> pseudo-labels -> fine-tune; fine-tunes `refiner` in place. Returns
    the round's row (written to round.json: no clock readings, so the same inputs write the
    same bytes) and the search's seconds (None without CMA-ES)."""
    params, generator, report, tracker = loop.params, loop.generator, loop.report, loop.tracker
    pairs, es_pairs, dev_pairs, resume = loop.pairs, loop.es_pairs, loop.dev_pairs, loop.resume
    fan_out = loop.fan_out
    rp, cp = params.refiner, params.cmaes
    round_dir = layout.round_dir(rp.out_dir, s)
    search_seconds: float | None = None
    q_im = copy.deepcopy(refiner)  # q_im: the frozen target network for this round
    row: dict[str, Any] = {"round": s}
    if cp.enabled:
        # Round 1 searches from the base refiner, exactly what `recast search` (the DVC
        # `search` stage) ran: its finished state is an input here, always reused.
        search_dir = layout.search_dir(rp.out_dir, cp.out_dir, s)
        result, space = run_search(
            refiner,
            generator,
            es_pairs,
            cp,
            search_dir,
            rp.max_refined_tokens,
            resume=resume or s == 1,
            on_iteration=lambda r: report.iteration(s, r),
            evaluator=fan_out and population_evaluator(params, refiner.source, es_pairs, fan_out),
            guard=Guard.from_params(rp),
        )
        xi_star = np.asarray(result.xi_star)
        e_star = space.embeddings(xi_star)
        search_seconds = result.seconds
        row.update(_search_row(result))
        row.update(
            dev_fitness_cached(
                refiner, generator, dev_pairs, space, params, xi_star, search_dir, save=s != 1
            )
        )
        io.write_npy(round_dir / "xi_star.npy", xi_star)
        track_search(tracker, f"search round-{s}", result, row, round_dir / "xi_star.npy")
    else:  # Table 3's ablation: no search, the unbiased refiner labels itself
        e_star = refiner.base_embeddings().detach()
    report.message(f"round {s}: pseudo-labels for {len(pairs)} queries")
    labels = pseudo_labels(
        refiner,
        pairs,
        e_star,
        rp.max_refined_tokens,
        guard=rp.guard,
        check_encoder=rp.check_encoder,
    )
    # what is written as x*: what the guard would send (x where x* is harmful); the paper
    # trains on x* as decoded
    x_star = [r.sent if rp.guard else r.x_prime for r in labels]
    rows = [
        {"id": p.id, "x": p.prompt, "x_star": x, "verdict": r.verdict}
        for p, x, r in zip(pairs, x_star, labels, strict=True)
    ]
    io.write_parquet(round_dir / "pseudo_labels.parquet", pa.Table.from_pylist(rows, PSEUDO_SCHEMA))
    # The guard's D for Eq. 12: the pairs whose x* the check keeps (a rewrite, or a copy). A
    # harmful x* is neither trained on as decoded nor replaced by x: measured, replacing it by x
    # (half of all x*) taught p_im to copy (eval prompts: copy 45 %, rewrite 9 % after round 1).
    keep = [i for i, r in enumerate(labels) if not (rp.guard and r.fallback)]
    stats = finetune(
        refiner,
        q_im,
        [pairs[i] for i in keep],
        [x_star[i] for i in keep],
        rp,
        on_step=lambda st: report.step(s, st),
    )
    io.write_json(round_dir / "train_curve.json", [asdict(st) for st in stats])
    for st in stats:
        tracker.log_metrics({"loss": st.loss, "ce": st.ce, "kl": st.kl}, step=st.step)
    save_refiner(refiner, layout.refiner_dir(rp.out_dir, s))
    tracker.log_artifact(round_dir / "pseudo_labels.parquet")
    row.update(
        {
            "final_loss": stats[-1].loss if stats else None,
            "empty_pseudo_labels": sum(not r.x_prime for r in labels),
            "x_star_trained_on": len(keep),
            **x_star_checks(labels),
        }
    )
    io.write_json(round_dir / "round.json", row)
    return row, search_seconds


def track_search(
    tracker: Tracker, name: str, result: SearchResult, metrics: dict[str, Any], xi_path: Path
) -> None:
    """A nested run for one CMA-ES search: the curve per iteration, ξ* and its numbers."""
    with tracker.run(name, tags={"stage": "cmaes"}):
        for row in result.history:
            tracker.log_metrics(
                {"fitness_best": row["best"], "fitness_mean": row["mean"], "sigma": row["sigma"]},
                step=int(row["iteration"]),
            )
        tracker.log_metrics({k: v for k, v in metrics.items() if k != "round"})
        tracker.log_metrics({"seconds": result.seconds})
        tracker.log_artifact(xi_path, "xi_star")


def x_star_checks(labels: list[Refined]) -> dict[str, int]:
    """How many pseudo-labels x* the check gave each verdict, and how many fell back to x."""
    verdicts = ("rewrite", "copy", "answers", "drift", "degenerate")
    out = {f"x_star_{v}": sum(r.verdict == v for r in labels) for v in verdicts}
    out["x_star_fallback"] = sum(r.fallback for r in labels)
    return out


def _search_row(result: SearchResult) -> dict[str, Any]:
    return {
        **{f"search_{k}": v for k, v in result.checks.items()},
        "fitness_at_zero": result.fitness_at_zero,
        "best_fitness": result.best_fitness,
        "xi_star_norm": float(np.linalg.norm(result.xi_star)),
        "iterations": result.iterations,
        "evaluations": result.evaluations,
    }
