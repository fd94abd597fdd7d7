"""Rebuild the bundled real samples (src/recast/data/samples) from verbatim public releases.

Usage: python scripts/make_samples.py ../shared/data

Each sample is a verbatim prefix of its release (whole OASST1 trees, so that reply rankings and
contexts stay intact), copied with the release's licence file.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "recast" / "data" / "samples"
HH_PAIRS = 160  # per file
OASST_TREES = 40
ALPACA_PAIRS = 200


def main(src: Path) -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "hh-rlhf").mkdir(parents=True)
    for name in ("harmless-base-test.jsonl.gz", "helpful-base-test.jsonl.gz"):
        with gzip.open(src / "hh-rlhf" / name, "rt", encoding="utf-8") as f:
            lines = [next(f) for _ in range(HH_PAIRS)]
        with gzip.GzipFile(OUT / "hh-rlhf" / name, "wb", mtime=0) as g:  # mtime=0: same bytes
            g.write("".join(lines).encode("utf-8"))
    shutil.copy(src / "hh-rlhf" / "LICENSE", OUT / "hh-rlhf" / "LICENSE")

    (OUT / "oasst1").mkdir()
    trees: list[str] = []
    kept = []
    with open(src / "oasst1" / "en-validation.jsonl", encoding="utf-8") as f:
        for line in f:
            tree = json.loads(line)["message_tree_id"]
            if tree not in trees:
                if len(trees) == OASST_TREES:
                    continue
                trees.append(tree)
            kept.append(line)
    (OUT / "oasst1" / "en-validation.jsonl").write_text("".join(kept), encoding="utf-8")
    shutil.copy(src / "oasst1" / "LICENSE", OUT / "oasst1" / "LICENSE")

    (OUT / "alpaca-gpt4").mkdir()
    data = json.loads((src / "alpaca-gpt4" / "comparison_gpt4_data_en.json").read_text())
    (OUT / "alpaca-gpt4" / "comparison_gpt4_data_en.json").write_text(
        json.dumps(data[:ALPACA_PAIRS], indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    shutil.copy(src / "alpaca-gpt4" / "DATA_LICENSE", OUT / "alpaca-gpt4" / "DATA_LICENSE")

    shutil.copytree(src / "eval-samples", OUT / "eval-samples")  # already slices of 10-20
    shutil.copy(src / "README.md", OUT / "SOURCES.md")
    print(f"samples written to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
