"""Verdict shares of the refiner's x' on dev-split queries (never evaluation prompts).

Decodes x' = p_im(x) with the unbiased refiner through the one refine path (recast.refiner.
refine, guard off so that every verdict shows), for each refiner spec and decoding rule given,
and prints the share of `rewrite`, `copy` and harmful (answers, drift, degenerate) verdicts,
the seconds, and optionally every x'. The numbers in docs/method.md ("Decoding x' to the end
of the query", "Warm start ρ_sft") come from

    python scripts/refiner_verdicts.py --n 20 --refiner smollm2-135m-instruct:paper \
        --refiner smollm2-135m-instruct:query --refiner runs/warmstart/refiner:query --show
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from recast.config import load_params
from recast.refiner.check import HARMFUL, VERDICTS
from recast.refiner.model import Refiner
from recast.refiner.refine import refine
from recast.stages.common import load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--n", type=int, default=20, help="first N dev-split queries")
    ap.add_argument(
        "--refiner",
        action="append",
        required=True,
        help="SPEC:DECODING, e.g. smollm2-135m-instruct:paper or runs/warmstart/refiner:query",
    )
    ap.add_argument("--show", action="store_true", help="print every x and x'")
    ap.add_argument("--json", help="write the rows and shares here")
    args = ap.parse_args()

    out = []
    for item in args.refiner:
        spec, _, rule = item.rpartition(":")
        params = load_params(args.params, [f"refiner.decoding={rule}"])
        xs = [p.prompt for p in load_split(params, "dev")][: args.n]
        refiner = Refiner.from_params(spec, params.refiner)
        t0 = time.perf_counter()
        rows = refine(
            refiner,
            xs,
            params.refiner.max_refined_tokens,
            guard=False,
            check_encoder=params.refiner.check_encoder,
        )
        seconds = time.perf_counter() - t0
        counts = Counter(r.verdict for r in rows)
        shares = {v: counts.get(v, 0) / len(rows) for v in VERDICTS}
        harmful = sum(counts.get(v, 0) for v in HARMFUL) / len(rows)
        print(
            f"\n## {spec} ({rule} decoding), {len(rows)} dev queries, {seconds:.0f} s\n"
            + "  ".join(f"{v} {counts.get(v, 0)}" for v in VERDICTS)
            + f"  | rewrite {shares['rewrite']:.0%} copy {shares['copy']:.0%}"
            f" harmful {harmful:.0%}"
        )
        if args.show:
            for r in rows:
                print(f"- [{r.verdict}] x: {r.x[:160]!r}\n  x': {r.x_prime[:300]!r}")
        out.append(
            {
                "refiner": spec,
                "decoding": rule,
                "seconds": seconds,
                "counts": dict(counts),
                "harmful": harmful,
                "rows": [{"x": r.x, "x_prime": r.x_prime, "verdict": r.verdict} for r in rows],
            }
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
