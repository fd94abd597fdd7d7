"""The report: Table 2's layout (win / loss / tie % of "ours vs X" per set, with bootstrap 95%
intervals and n), the judge's measured trust, the reward model's accuracy, and each system's
mean reward, reward variance and generator cost; as Markdown, HTML and bar plots."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.evaluation.config import EvaluateParams

NAMES = {
    "org": "ORG",
    "ours": "ours",
    "bon": "BoN",
    "sr": "SR",
    "dpo": "DPO",
    "bpo": "BPO",
    "no_cmaes": "ours without CMA-ES",
    "omega_0": "ours with ω = 0",
    "alignpro": "Align-Pro",
}


def _cell(c: dict[str, Any]) -> str:
    if c["win"] is None:
        return f"no verdict parsed ({c['unparsed']} of {c['n']})"
    return f"{c['win']:.0f} / {c['loss']:.0f} / {c['tie']:.0f} (n={c['n'] - c['unparsed']})"


def difference(c: dict[str, Any], first: str, second: str) -> str:
    """Win − loss with its interval, and what it allows one to say."""
    wml = c["win_minus_loss"]
    if wml["value"] is None:
        return "no verdict parsed"
    lo, hi = wml["ci95"]
    if not wml["excludes_zero"]:
        verdict = "no detectable difference"
    else:
        verdict = f"{first} ahead" if lo > 0 else f"{second} ahead"
    return f"{wml['value']:+.0f} [{lo:+.0f}, {hi:+.0f}]: {verdict}"


def _percent(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _shares(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    fell = "" if r["fallback"] is None else f", fell back {100 * r['fallback']:.0f}%"
    return (
        f"rewrite {100 * r['rewrite']:.0f}%, copy {100 * r['copy']:.0f}%, "
        f"harmful {100 * r['harmful']:.0f}%{fell} (n={r['n']})"
    )


def vs_length(a: dict[str, Any]) -> str:
    """The judge's agreement minus the length rule's, in points, with its 95% interval."""
    d = a.get("vs_length") or {}
    if d.get("value") is None:
        return "–"
    lo, hi = d["ci95"]
    return f"{d['value']:+.0f} [{lo:+.0f}, {hi:+.0f}]"


def judge_line(result: dict[str, Any]) -> str:
    """The judge's measured trust in one sentence, printed beside every table."""
    judge = result["judge"].get("name") or f"{result['judge']['model']} ({result['judge']['mode']})"
    parts = [
        f"{src}: agrees {_percent(a['agreement'])} (longer answer wins: "
        f"{_percent(a['length_baseline'])}, judge − rule {vs_length(a)} points; length-balanced "
        f"{_percent(a['balanced_agreement'])} vs {_percent(a['balanced_length_baseline'])}, "
        f"n={a['balanced_n']})"
        for src, a in result["judge"]["agreement"].items()
    ]
    return f"Judge {judge} against labelled pairs — " + "; ".join(parts) + "."


def tables(
    ev: EvaluateParams, result: dict[str, Any]
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each table of the report."""
    sets = [*ev.sets, "all"]
    pairs = list(dict.fromkeys((c["system"], c["versus"]) for c in result["cells"]))
    by = {(c["system"], c["versus"], c["set"]): c for c in result["cells"]}
    name = NAMES.get
    wlt = [
        [f"{name(a, a)} vs {name(b, b)}", *(_cell(by[(a, b, s)]) for s in sets)] for a, b in pairs
    ]
    overall = []
    for a, b in pairs:
        c = by[(a, b, "all")]
        lc = "–" if c.get("lc_win") is None else f"{c['lc_win']:.0f}"
        raw = "–" if c["win"] is None else f"{c['win'] + c['tie'] / 2:.0f}"
        overall.append(
            [f"{name(a, a)} vs {name(b, b)}", difference(c, name(a, a), name(b, b)), raw, lc]
        )
    trust = [
        [
            src,
            _percent(a["agreement"]),
            _percent(a["length_baseline"]),
            vs_length(a),
            f"{_percent(a['balanced_agreement'])} / {_percent(a['balanced_length_baseline'])}"
            f" (n={a['balanced_n']})",
            _percent(a["ties"]),
            _percent(a["position_consistency"]),
            str(a["unparsed"]),
            str(a["n"]),
        ]
        for src, a in result["judge"]["agreement"].items()
    ]
    systems = [
        [
            NAMES.get(n, n),
            f"{s['reward_mean']:.3f}",
            f"{s['reward_var']:.3f}",
            str(s["calls"]),
            str(s["tokens"]),
        ]
        for n, s in result["systems"].items()
    ]
    return [
        (
            "Over all sets: win − loss in points with its bootstrap 95% interval (resampling "
            "prompts), the raw win rate (a tie counts half) and the length-controlled win rate "
            "(logistic model with the answers' length difference as covariate, read at equal "
            f"length). {judge_line(result)}",
            ["comparison", "win − loss [95% CI]", "win rate %", "length-controlled win rate %"],
            overall,
        ),
        (
            "Win / loss / tie % of the first system against the second, per set "
            "(n = parsed verdicts)",
            ["", *sets],
            wlt,
        ),
        (
            "The judge against labelled pairs (agreement = prefers the labelled better answer; "
            'ties count as misses), beside the rule "the longer answer wins"',
            [
                "labels",
                "agreement",
                "longer wins",
                "judge − rule, points [95% CI]",
                "length-balanced: judge / rule",
                "ties",
                "position consistency",
                "unparsed",
                "pairs",
            ],
            trust,
        ),
        (
            "What each rewriting system sent: the rewrite check's verdict on x' before the "
            "guard (rewrite = the same request said differently, harmful = answers, drift or "
            "degenerate) and the share the guard sent as x instead",
            ["system", *sets],
            [
                [NAMES.get(n, n), *(_shares(by_set.get(s)) for s in sets)]
                for n, by_set in result.get("rewrites", {}).items()
            ],
        ),
        (
            "Reward (Bradley-Terry reward model) and generator cost per system",
            ["system", "mean reward", "reward variance", "generator calls", "tokens"],
            systems,
        ),
    ]


def _markdown(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html(title: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table>"


def _plots(ev: EvaluateParams, result: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    cells = [c for c in result["cells"] if c["set"] in ev.sets or c["set"] == "all"]
    name = NAMES.get
    labels = [f"{name(c['system'], c['system'])} vs {name(c['versus'], c['versus'])} · {c['set']}"
              for c in cells]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(cells) + 1.2))
    left = [0.0] * len(cells)
    for key, color in (("win", "#2a9d8f"), ("tie", "#bbbbbb"), ("loss", "#e76f51")):
        values = [c[key] or 0.0 for c in cells]  # a cell with no parsed verdict: an empty bar
        ax.barh(labels, values, left=left, color=color, label=key)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("% of prompts (win / tie / loss of the first system)")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with io.atomic_path(out / "winrates.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    files.append("winrates.png")

    names = list(result["systems"])
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(
        [NAMES.get(n, n) for n in names],
        [result["systems"][n]["reward_mean"] for n in names],
        yerr=[result["systems"][n]["reward_var"] ** 0.5 for n in names],
        color="#457b9d",
    )
    ax.set_ylabel("reward (mean ± sd)")
    fig.tight_layout()
    with io.atomic_path(out / "reward.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    files.append("reward.png")
    return files


def write_report(
    params: Params, result: dict[str, Any], reward: dict[str, Any] | None, out: Path
) -> dict[str, Any]:
    """out/report.md and report.html (with the plots) from the evaluation's `result` and the
    reward model's metrics (None: not trained); returns the paths written."""
    parts = tables(params.evaluate, result)
    sizes = ", ".join(f"{k}: {v}" for k, v in result["prompts"].items())
    intro = [
        "# recast evaluation",
        "",
        f"Prompts per set ({sizes}); every system is answered by the generator "
        f"`{params.generator.model}`.",
    ]
    if reward:
        intro.append(
            f"Reward model `{params.reward.encoder}`: held-out pairwise accuracy "
            f"{100 * reward['dev_accuracy']:.1f}% on {reward['dev_pairs']} dev pairs."
        )
    if params.tracking.enabled:  # by name: a run id would make this file differ on every run
        intro.append(
            "`recast trace evaluate` leads from these cells (the latest MLflow run `evaluate`) "
            "to the training run and its inputs."
        )
    plots = _plots(params.evaluate, result, out)
    md = "\n".join(intro) + "\n\n" + "\n".join(_markdown(*t) for t in parts)
    md += "\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n"
    body = "".join(f"<p>{html.escape(line)}</p>" for line in intro[1:] if line)
    body += "".join(_html(*t) for t in parts)
    body += "".join(f'<img src="{p}" alt="{p}">' for p in plots)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>recast evaluation</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
        "img{max-width:100%}</style></head><body><h1>recast evaluation</h1>"
        f"{body}</body></html>"
    )
    io.write_text(out / "report.md", md)
    io.write_text(out / "report.html", page)
    return {"report": str(out / "report.md"), "html": str(out / "report.html"), "plots": plots}
