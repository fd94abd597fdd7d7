"""The rewrite check's verdict shares of every system that rewrites x, on the dev split and on
the bundled evaluation prompts: the table of issue 12 (ours, its ablations without CMA-ES and
with ω = 0, BPO, Align-Pro), without answering or judging anything.

Each system's x' comes from the same function the evaluation uses
(recast.evaluation.systems.REWRITERS); a system whose model is not trained is listed as
missing, with the command that trains it.

    python scripts/rewrite_shares.py                      # every rewriting system present
    python scripts/rewrite_shares.py --systems ours --show --json shares.json
    python scripts/rewrite_shares.py --systems ours --queries dev --set redraw.n=4
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from recast.config import load_params
from recast.errors import RecastError
from recast.evaluation.run import eval_prompts
from recast.evaluation.systems import REWRITERS
from recast.refiner.check import HARMFUL, VERDICTS
from recast.stages.common import load_split


def shares(verdicts: list[str], fallbacks: int | None) -> dict[str, float | int | None]:
    """Counts per verdict, and the shares of rewrite, copy, harmful and fallbacks."""
    n = len(verdicts)
    counts = Counter(verdicts)
    harmful = sum(counts.get(v, 0) for v in HARMFUL)
    return {
        "n": n,
        **{v: counts.get(v, 0) for v in VERDICTS},
        "rewrite_share": counts.get("rewrite", 0) / n,
        "copy_share": counts.get("copy", 0) / n,
        "harmful_share": harmful / n,
        "fallback_share": None if fallbacks is None else fallbacks / n,
        # what the generator is sent that the check calls harmful: 0 under the guard
        "harmful_sent_share": (harmful - (fallbacks or 0)) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--systems", nargs="*", default=list(REWRITERS))
    ap.add_argument("--show", action="store_true", help="print every x and x'")
    ap.add_argument("--json", help="write the shares and every x' here")
    ap.add_argument(
        "--queries", nargs="*", default=["dev", "eval"], choices=["dev", "eval"],
        help="which queries (choose settings on dev alone, then look at eval once)",
    )  # fmt: skip
    ap.add_argument("--set", action="append", default=[], help="section.key=value override")
    args = ap.parse_args()
    params = load_params(args.params, args.set)
    every = {
        "dev": lambda: [p.prompt for p in load_split(params, "dev")],
        "eval": lambda: [p.prompt for p in eval_prompts(params)],
    }
    queries = {name: every[name]() for name in args.queries}
    out: dict[str, dict[str, object]] = {}
    print(
        f"{'system':<10} {'queries':<5} {'n':>3} {'rewrite':>8} {'copy':>6} {'harmful':>8}"
        f" {'sent harmful':>13} {'fallback':>9}   answers/drift/degenerate"
    )
    for name in args.systems:
        for split, xs in queries.items():
            try:
                made = REWRITERS[name](params, name, xs)
            except RecastError as e:
                print(f"{name:<10} {split:<5} missing: {e}")
                break
            row = shares(made.verdicts, made.fallbacks)
            fb = row["fallback_share"]
            print(
                f"{name:<10} {split:<5} {row['n']:>3} {row['rewrite_share']:>8.0%}"
                f" {row['copy_share']:>6.0%} {row['harmful_share']:>8.0%}"
                f" {row['harmful_sent_share']:>13.0%} {'-' if fb is None else f'{fb:.0%}':>9}"
                f"   {row['answers']}/{row['drift']}/{row['degenerate']}",
                flush=True,
            )
            if args.show:
                for x, x_prime, v in zip(xs, made.sent, made.verdicts, strict=True):
                    print(f"  - [{v}] x: {x[:150]!r}\n    sent: {x_prime[:220]!r}")
            out.setdefault(name, {})[split] = {
                **row,
                "rows": [
                    {"x": x, "sent": s, "verdict": v}
                    for x, s, v in zip(xs, made.sent, made.verdicts, strict=True)
                ],
            }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
