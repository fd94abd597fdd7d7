"""Validate the rewrite check (recast.refiner.check) on the hand-labelled rewrites.

Prints, for the tuning part (bpo_test rows), the held-out part (vicuna_eval rows) and all rows:
the confusion matrix (label x verdict), the recall of harmful rows, the share of `rewrite` rows
flagged, and how exactly `copy` is recognised. `--errors` lists every row whose verdict is off.

    python scripts/check_rewrites.py [--errors] [--lexical] [--labels FILE.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recast.refiner.check import HARMFUL, VERDICTS, Rates, check_many, encoder, rates

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABELS = ROOT.parent / "shared/data/rewrite-labels/labelled_rewrites.jsonl"
PARTS = {"tuned (bpo_test)": {"bpo_test"}, "held out (vicuna_eval)": {"vicuna_eval"}}


def show(title: str, r: Rates) -> None:
    print(f"\n## {title}: {r.rows} rows")
    print("label \\ verdict".ljust(16) + "".join(v.rjust(11) for v in VERDICTS))
    for label in VERDICTS:
        print(label.ljust(16) + "".join(str(r.matrix[label][v]).rjust(11) for v in VERDICTS))
    print(
        f"harmful recall {r.harmful_recall:.1%}  rewrite flagged {r.rewrite_flagged:.1%}  "
        f"copy recall {r.copy_recall:.1%}  copy precision {r.copy_precision:.1%}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--errors", action="store_true", help="list the rows the check gets wrong")
    ap.add_argument("--encoder", default="minilm-l6", help="sentence encoder for the cosine")
    ap.add_argument("--lexical", action="store_true", help="no encoder: the lexical check alone")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.labels.read_text(encoding="utf-8").splitlines()]
    enc = None if args.lexical else encoder(args.encoder)
    print(f"check: {'lexical only' if enc is None else 'lexical + ' + args.encoder}")
    verdicts = check_many([r["x"] for r in rows], [r["x_prime"] for r in rows], encoder=enc)
    for title, sets in PARTS.items():
        part = [
            (r["label"], c.verdict) for r, c in zip(rows, verdicts, strict=True) if r["set"] in sets
        ]
        show(title, rates(part))
    show("all", rates([(r["label"], c.verdict) for r, c in zip(rows, verdicts, strict=True)]))
    if args.errors:
        print("\n## rows whose verdict is off (harmful vs not, or copy vs not)")
        for i, (r, c) in enumerate(zip(rows, verdicts, strict=True)):
            wrong = (r["label"] in HARMFUL) != c.harmful or (r["label"] == "copy") != (
                c.verdict == "copy"
            )
            if wrong:
                print(f"#{i} [{r['set']}] {r['label']} -> {c.verdict}: {c.reason}")
                print(f"   x : {r['x'][:120]!r}\n   x': {r['x_prime'][:160]!r}")


if __name__ == "__main__":
    main()
