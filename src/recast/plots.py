"""Fitness curves: a CSV for `dvc plots` and a PNG for people (best, mean and σ per iteration)."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Any

from recast import io

FIELDS = ("round", "iteration", "best", "mean", "sigma", "best_so_far")


def fitness_rows(histories: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {"round": r, **{k: row[k] for k in FIELDS[1:]}}
        for r, rows in sorted(histories.items())
        for row in rows
    ]


def write_fitness(histories: dict[int, list[dict[str, Any]]], folder: str | Path) -> None:
    """folder/fitness.csv and folder/fitness.png, one line per round."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on workers
    import matplotlib.pyplot as plt

    rows = fitness_rows(histories)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    io.write_text(Path(folder) / "fitness.csv", buf.getvalue())

    fig, (ax, ax_sigma) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r, history in sorted(histories.items()):
        it = [h["iteration"] for h in history]
        (line,) = ax.plot(it, [h["best"] for h in history], marker="o", label=f"round {r}: best")
        ax.plot(
            it,
            [h["mean"] for h in history],
            ls="--",
            color=line.get_color(),
            label=f"round {r}: mean",
        )
        ax_sigma.plot(
            it,
            [h["sigma"] for h in history],
            marker=".",
            color=line.get_color(),
            label=f"round {r}",
        )
    ax.set(
        xlabel="CMA-ES iteration",
        ylabel="fitness: mean CE of y (nats)",
        title="Fitness per iteration",
    )
    ax_sigma.set(xlabel="CMA-ES iteration", ylabel="σ", title="Step size σ")
    ax.legend(fontsize=7)
    ax_sigma.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_path(Path(folder) / "fitness.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
