"""From judged sets to the evaluation's results: the cells "system vs versus" per set and over
all sets (win / loss / tie with bootstrap intervals, win − loss, length-controlled win rate),
the judgments per prompt, each system's rewards and cost, what rewriting systems sent, and the
flat DVC metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from recast.evaluation.agreement import Measurement, length
from recast.evaluation.bootstrap import bootstrap_ci, rates, win_minus_loss
from recast.evaluation.config import EvaluateParams
from recast.evaluation.judge import Judged
from recast.evaluation.judging import comparisons
from recast.evaluation.length_control import length_controlled_win_rate
from recast.evaluation.systems import Answers
from recast.records import EvalPrompt


@dataclasses.dataclass
class SetResult:
    """One evaluation set answered by every system and judged: the unit the sets fan out into
    (each can run in its own worker process; everything here pickles)."""

    set: str
    prompts: list[EvalPrompt]
    systems: dict[str, Answers]
    rewards: dict[str, list[float]]
    """r_ω(x, y) of each system's answers."""
    judged: dict[tuple[str, str], Judged]
    """(system, versus) -> the judge's outcomes, one per prompt."""
    worker: int
    """The process that ran it: shows where a fanned-out set went."""


def rewrite_shares(verdicts: list[str], fallbacks: int | None) -> dict[str, float | int | None]:
    """What a system sent instead of x: shares of rewrite (not a copy), copy and harmful x'
    (answers, drift, degenerate) before the guard, and the guard's fallback rate after it."""
    n = len(verdicts)
    harmful = sum(v in ("answers", "drift", "degenerate") for v in verdicts)
    return {
        "n": n,
        "rewrite": sum(v == "rewrite" for v in verdicts) / n,
        "copy": sum(v == "copy" for v in verdicts) / n,
        "harmful": harmful / n,
        "fallback": None if fallbacks is None else fallbacks / n,
    }


def rewrites(per_set: list[SetResult], systems: list[str]) -> dict[str, dict[str, Any]]:
    """rewrite_shares per system that rewrites x, per set and over all sets."""
    out: dict[str, dict[str, Any]] = {}
    for name in systems:
        answered = [r.systems[name] for r in per_set]
        if not all(a.verdicts for a in answered):
            continue
        out[name] = {r.set: rewrite_shares(a.verdicts or [], a.fallbacks)
                     for r, a in zip(per_set, answered, strict=True)}  # fmt: skip
        fell = [a.fallbacks for a in answered]
        out[name]["all"] = rewrite_shares(
            [v for a in answered for v in a.verdicts or []],
            None if None in fell else sum(f or 0 for f in fell),
        )
    return out


def cells(
    per_set: list[SetResult], ev: EvaluateParams
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The table's cells, per set and "all", for every judged comparison; and the judgments
    per prompt, by "<system>_vs_<versus>" (reports/eval/judgments/)."""
    prompts = [p for r in per_set for p in r.prompts]
    out: list[dict[str, Any]] = []
    judgments: dict[str, list[dict[str, Any]]] = {}
    for system, other in comparisons(ev.systems):
        outcomes = {r.set: r.judged[system, other].outcomes for r in per_set}
        outcomes["all"] = [o for r in per_set for o in outcomes[r.set]]
        lengths = {  # answer lengths in words, for the length-controlled win rate
            r.set: [
                [length(a) for a in r.systems[system].answers],
                [length(a) for a in r.systems[other].answers],
            ]
            for r in per_set
        }
        lengths["all"] = [[n for r in per_set for n in lengths[r.set][k]] for k in (0, 1)]
        for set_name in [*ev.sets, "all"]:
            out.append(
                {
                    "set": set_name,
                    "system": system,
                    "versus": other,
                    "n": len(outcomes[set_name]),
                    "unparsed": sum(o is None for o in outcomes[set_name]),
                    **rates(outcomes[set_name]),
                    "ci95": bootstrap_ci(outcomes[set_name], ev.n_boot, ev.seed),
                    "win_minus_loss": win_minus_loss(outcomes[set_name], ev.n_boot, ev.seed),
                    "lc_win": length_controlled_win_rate(outcomes[set_name], *lengths[set_name]),
                }
            )
        raw = [r for s in per_set for r in s.judged[system, other].raw or [None] * len(s.prompts)]
        judgments[f"{system}_vs_{other}"] = [
            {"id": p.id, "set": p.set, "outcome": o, "raw": list(r) if r else None}
            for p, o, r in zip(prompts, outcomes["all"], raw, strict=True)
        ]
    return out, judgments


def systems_summary(per_set: list[SetResult], names: list[str]) -> dict[str, dict[str, Any]]:
    """Each system's generator calls and tokens over all sets, and its mean and variance of
    r_ω(x, y)."""

    def total(name: str, field: str) -> Any:
        return sum(getattr(r.systems[name], field) for r in per_set)

    def rewards(name: str) -> list[float]:
        return [v for r in per_set for v in r.rewards[name]]

    return {
        name: {
            "calls": total(name, "calls"),
            "tokens": total(name, "tokens"),
            "reward_mean": float(np.mean(rewards(name))),
            "reward_var": float(np.var(rewards(name))),
        }
        for name in names
    }


def result(
    per_set: list[SetResult],
    ev: EvaluateParams,
    judge: dict[str, Any],
    trust: dict[str, Measurement],
    table: list[dict[str, Any]],
) -> dict[str, Any]:
    """results.json: prompts per set, the judge and its agreement with labels, the cells, each
    system's figures and what the rewriting systems sent. The judge's seconds per pair are left
    out: a clock reading in a DVC output would change its hash on every run (`recast judge
    measure` reports them)."""
    agreement = {
        k: {f: v for f, v in dataclasses.asdict(m).items() if f != "seconds_per_pair"}
        for k, m in trust.items()
    }
    return {
        "prompts": {r.set: len(r.prompts) for r in per_set},
        "judge": {**judge, "agreement": agreement},
        "cells": table,
        "systems": systems_summary(per_set, ev.systems),
        "rewrites": rewrites(per_set, ev.systems),
    }


def flat_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """DVC metrics: one key per table cell, agreement and system figure."""
    flat: dict[str, Any] = {}
    for c in result["cells"]:
        cell = f"{c['set']}/{c['system']}_vs_{c['versus']}"
        for k in ("win", "loss", "tie"):
            flat[f"{cell}/{k}"] = None if c[k] is None else round(c[k], 2)
        flat[f"{cell}/unparsed"] = c["unparsed"]
    for cell in result["cells"]:
        name = f"{cell['set']}/{cell['system']}_vs_{cell['versus']}"
        flat[f"{name}/win_minus_loss"] = cell["win_minus_loss"]["value"]
        flat[f"{name}/lc_win"] = cell["lc_win"]
    for src, a in result["judge"]["agreement"].items():
        for key in ("agreement", "length_baseline", "balanced_agreement", "position_consistency"):
            flat[f"judge/{src}/{key}"] = a[key]
    for name, by_set in result.get("rewrites", {}).items():
        for key in ("rewrite", "copy", "harmful", "fallback"):
            flat[f"rewrites/{name}/{key}"] = by_set["all"][key]
    for name, s in result["systems"].items():
        for k, v in s.items():
            flat[f"system/{name}/{k}"] = v
    return flat
