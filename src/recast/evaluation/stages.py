"""The evaluation stages' former address, kept so that callers written against it (the `main`
stage, scripts) still import from here. The stages live in recast.stages; the library in
recast.evaluation.{run, systems, answers, judging, results, report}. No library module imports
this one."""

from __future__ import annotations

from recast.evaluation.judging import judge_from, judge_name, labelled_pairs
from recast.evaluation.results import SetResult, rewrite_shares
from recast.evaluation.run import MapSets, eval_prompts, evaluate_set
from recast.stages.baselines import reward as reward_stage
from recast.stages.evaluate import evaluate as evaluate_stage
from recast.stages.evaluate import report as report_stage

__all__ = [
    "MapSets",
    "SetResult",
    "eval_prompts",
    "evaluate_set",
    "evaluate_stage",
    "judge_from",
    "judge_name",
    "labelled_pairs",
    "report_stage",
    "reward_stage",
    "rewrite_shares",
]
