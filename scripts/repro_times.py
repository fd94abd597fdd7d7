"""`dvc repro TARGET…`, with the wall time of each stage it ran: where the time of `make run` /
`make reproduce` goes. DVC's own output passes through as it comes; the table follows it.

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

_RUNNING = re.compile(r"^Running stage '([^']+)'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="dvc.yaml stages (default: all)")
    parser.add_argument("--json", help="also write {stage: seconds} here")
    args = parser.parse_args()
    start = time.perf_counter()
    began: dict[str, float] = {}  # stage -> when DVC said it starts running it
    # DVC runs the stages one after another and announces each: the time between two
    # announcements is the first one's (the last one's ends with the process)
    with subprocess.Popen(
        ["dvc", "repro", *args.targets],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            found = _RUNNING.match(line)
            if found:
                began[found.group(1)] = time.perf_counter()
    end = time.perf_counter()
    marks = [*began.values(), end]
    times = {stage: marks[i + 1] - t for i, (stage, t) in enumerate(began.items())}
    width = max([len(s) for s in times] + [5])
    print(f"\n{'stage':<{width}}  seconds")
    for stage, seconds in times.items():
        print(f"{stage:<{width}}  {seconds:7.0f}")
    total = end - start
    print(f"{'total':<{width}}  {total:7.0f}  ({total / 60:.1f} min; stages up to date not listed)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stages": times, "total": total}, f, indent=1)
    if proc.returncode != 0:
        sys.exit(f"dvc repro {' '.join(args.targets)} failed (exit {proc.returncode})")


if __name__ == "__main__":
    main()
