"""`dvc repro TARGET…` one stage at a time, in the order DVC would run them, timing each: where
the time of `make run` / `make reproduce` goes. Stages that are up to date are listed as such.

    python scripts/repro_times.py main            # the main job's stages
    python scripts/repro_times.py                 # every stage (make reproduce)
    python scripts/repro_times.py main --json t.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

_RUNNING = re.compile(r"^Running stage '([^']+)'", re.M)


def planned(targets: list[str]) -> list[str]:
    """The stages `dvc repro TARGETS` would run, in its order (from a dry run)."""
    dry = subprocess.run(
        ["dvc", "repro", "--dry", *targets], capture_output=True, text=True, check=False
    )
    if dry.returncode != 0:
        sys.exit(f"dvc repro --dry {' '.join(targets)} failed:\n{dry.stderr or dry.stdout}")
    return list(dict.fromkeys(_RUNNING.findall(dry.stdout)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="dvc.yaml stages (default: all)")
    parser.add_argument("--json", help="also write {stage: seconds} here")
    args = parser.parse_args()
    stages = planned(args.targets)
    times: dict[str, float] = {}
    start = time.perf_counter()
    for stage in stages:
        t0 = time.perf_counter()
        # -s: this stage alone; its dependencies ran just before, in DVC's own order
        if subprocess.run(["dvc", "repro", "-s", stage], check=False).returncode != 0:
            sys.exit(f"stage {stage} failed after {time.perf_counter() - t0:.0f} s")
        times[stage] = time.perf_counter() - t0
    total = time.perf_counter() - start
    width = max([len(s) for s in times] + [5])
    print(f"\n{'stage':<{width}}  seconds")
    for stage, seconds in times.items():
        print(f"{stage:<{width}}  {seconds:7.0f}")
    print(f"{'total':<{width}}  {total:7.0f}  ({total / 60:.1f} min; up-to-date stages not listed)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stages": times, "total": total}, f, indent=1)


if __name__ == "__main__":
    main()
