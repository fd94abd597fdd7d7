"""The main job's summary: what one run did, in the order it did it, on one screen.

Pure functions over what the stages already wrote (their metrics, the training summary, the
main evaluation's results and answers): nothing here loads a model or writes a file.

Examples are chosen by rule, not by outcome: the first prompt of each set whose x' the check
calls a rewrite (the cases where "ours" sent something other than x), shown with the judge's
verdict on it whatever it is.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from recast.evaluation.report import difference, judge_line


@dataclass
class Example:
    """One prompt as the main job handled it: x -> x' -> the generator's answer to each."""

    set: str
    x: str
    x_prime: str
    verdict: str
    """The rewrite check's verdict on x'."""
    answer_x: str
    """The generator's answer to x (ORG)."""
    answer_x_prime: str
    """The generator's answer to what "ours" sent (x' here, since only rewrites are shown)."""
    outcome: str | None
    """The judge's verdict for ours against ORG on this prompt."""


def examples(
    sets: dict[str, dict[str, Any]], outcomes: dict[str, list[str | None]], k: int
) -> list[Example]:
    """Up to `k` examples, the first rewrite of each set in turn (then the next of each), so that
    they come from different sets. `sets` maps a set to its saved answers {"org", "ours",
    "prompts"}; `outcomes` a set to the judge's per-prompt outcomes for ours vs ORG."""
    queues: list[list[Example]] = []
    for name, got in sets.items():
        ours, org = got["ours"], got["org"]
        queue = [
            Example(name, x, sent, verdict, a_org, a_ours, outcome)
            for x, sent, verdict, a_org, a_ours, outcome in zip(
                got["prompts"],
                ours["sent"],
                ours["verdicts"],
                org["answers"],
                ours["answers"],
                outcomes[name],
                strict=True,
            )
            if verdict == "rewrite" and sent != x
        ]
        queues.append(queue)
    chosen: list[Example] = []
    depth = 0
    while len(chosen) < k and any(depth < len(q) for q in queues):
        chosen += [q[depth] for q in queues if depth < len(q)][: k - len(chosen)]
        depth += 1
    return chosen


def side_by_side(left: str, right: str, width: int, titles: tuple[str, str]) -> list[str]:
    """Two texts in two columns of width // 2 each, wrapped at words, as written otherwise
    (newlines kept)."""
    col = (width - 3) // 2

    def wrap(text: str) -> list[str]:
        lines: list[str] = []
        for para in text.strip().splitlines() or [""]:
            lines += textwrap.wrap(para, col, break_long_words=True) or [""]
        return lines

    a, b = [titles[0], *wrap(left)], [titles[1], *wrap(right)]
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    return [f"{la:<{col}} │ {lb}".rstrip() for la, lb in zip(a, b, strict=True)]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def render(
    data: dict[str, Any],
    train: dict[str, Any],
    warmstart: dict[str, Any] | None,
    result: dict[str, Any],
    chosen: list[Example],
    width: int = 100,
) -> str:
    """The summary as plain text: data, search, pseudo-labels, x' on the evaluation prompts,
    ours vs ORG with its interval and the judge's measured trust, then the examples.

    `data` is {"sources": metrics/pairs.json's sources, "sizes": metrics/split.json's sizes},
    `train` runs/train/summary.json, `warmstart` metrics/warmstart.json (None: no warm start),
    `result` the main evaluation's results.json."""
    out: list[str] = []
    rule = "─" * width

    sources = ", ".join(f"{k} {v['pairs']}" for k, v in data["sources"].items())
    sizes = data["sizes"]
    prompts = result["prompts"]
    out += [
        rule,
        "recast main job",
        rule,
        f"Data        preference pairs: {sources} "
        f"→ train {sizes['train']}, D_es {sizes['es']}, dev {sizes['dev']}",
        "            evaluation prompts: "
        + ", ".join(f"{k} {v}" for k, v in prompts.items())
        + f" (all {sum(prompts.values())})",
    ]
    if warmstart and warmstart.get("warm_start"):
        out.append(
            f"Warm start  ρ_sft on {warmstart['trained_on']} teacher rewrites the check kept "
            f"(of {warmstart['queries']}); loss {warmstart['first_loss']:.2f} → "
            f"{warmstart['final_loss']:.2f}"
        )
    for row in train["rounds"]:
        s = row["round"]
        if "fitness_at_zero" in row:
            out.append(
                f"Round {s}     CMA-ES F(0) → F(ξ*) on D_es {_f(row['fitness_at_zero'])} → "
                f"{_f(row['best_fitness'])}, on dev {_f(row.get('dev_fitness_at_zero'))} → "
                f"{_f(row.get('dev_fitness_at_xi_star'))} (CE of y_w, nats; lower is better)"
            )
        harmful = sum(row.get(f"x_star_{v}", 0) for v in ("answers", "drift", "degenerate"))
        n = sum(row.get(f"x_star_{v}", 0) for v in ("rewrite", "copy")) + harmful
        trained = row.get("x_star_trained_on")
        out.append(
            f"            x* on {n} queries: rewrite {row.get('x_star_rewrite', 0)}, "
            f"copy {row.get('x_star_copy', 0)}, harmful {harmful}"
            + ("" if trained is None else f"; p_im fine-tuned on {trained} of them")
        )
    shares = result.get("rewrites", {}).get("ours", {}).get("all")
    if shares:
        out.append(
            f"x'          on the evaluation prompts: rewrite {_pct(shares['rewrite'])}, copy "
            f"{_pct(shares['copy'])}, harmful {_pct(shares['harmful'])} before the guard; "
            f"fell back to x {_pct(shares['fallback'])}"
        )
    out.append(rule)
    for cell in result["cells"]:
        if cell["set"] != "all":
            continue
        a, b = cell["system"], cell["versus"]
        if cell["win"] is None:
            out.append(f"{a} vs {b}: no verdict parsed")
            continue
        out += [
            f"{a} vs {b.upper() if b == 'org' else b} (n={cell['n'] - cell['unparsed']}): "
            f"win {cell['win']:.0f}% / loss {cell['loss']:.0f}% / tie {cell['tie']:.0f}%",
            f"  win − loss {difference(cell, a, b)} (bootstrap 95% interval, points)",
        ]
    out += textwrap.wrap(judge_line(result), width)
    for i, ex in enumerate(chosen, 1):
        out += [
            rule,
            f"Example {i} ({ex.set}; judge: ours {ex.outcome or 'unparsed'})",
            *side_by_side(ex.x, ex.x_prime, width, ("x", "x' (check: rewrite)")),
            "",
            *side_by_side(ex.answer_x, ex.answer_x_prime, width, ("answer to x", "answer to x'")),
        ]
    if not chosen:
        out += [rule, "No x' on the evaluation prompts was a rewrite: no example to show."]
    out.append(rule)
    return "\n".join(_fit(line, width) for line in out)


def _fit(line: str, width: int) -> str:
    """A status line wrapped to the width, continued under its text (column 12)."""
    if len(line) <= width:
        return line
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=" " * 12))
