"""Great Expectations suites over the preference pairs and eval prompts (stage `validate`).

Each suite runs in an ephemeral GE context on a pandas view of the arrow table. The nested
`context` column becomes a `context_turns` count, and rules GE has no single expectation for
(chosen differs from rejected) become derived boolean columns checked with a value-set
expectation. `validate_and_report` always writes the full report (GE's result JSON per suite,
a summary, GE's HTML data docs) before it raises `ValidationFailed`, and replaces the previous
report as a whole.

The report is reproducible: the same tables give the same bytes, so DVC's hash of it (in
dvc.lock) changes only when the data or the checks do. GE stamps results and pages with the
wall-clock time and random UUIDs; while it runs here, its clock reads REPORT_TIME and its UUIDs
come from a seeded generator (`_reproducible`), so the pages show 1970-01-01 as the run time.

Great Expectations takes seconds to import, so it is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import types
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from recast.data.config import EVAL_SETS, TRAINING_SOURCES, ValidateParams
from recast.errors import ValidationFailed
from recast.io import replaced, write_json

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

MAX_EXAMPLE_IDS = 5
DATASOURCE = "recast"
DOCS_SITE = "recast"
NON_WHITESPACE = r"\S"
CHOSEN_DIFFERS = "chosen_differs_from_rejected"
REPORT_TIME = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass
class Failure:
    """One failed expectation."""

    expectation: str
    """Readable name, e.g. 'expect_column_values_to_not_be_null(prompt)'."""
    count: int
    """Rows that violate it (0 for table-level expectations)."""
    example_ids: list[str] = field(default_factory=list)
    """Up to 5 distinct `id` values of violating rows ('<row N>' where the id itself is null)."""
    detail: str | None = None
    """For table-level failures or GE errors: the observed value or GE's error message."""
    example_origins: list[str | None] = field(default_factory=list)
    """Where each example came from, 'file:line' or 'file#index' (the `origin` in the row's
    meta), None where unknown: an id is a content hash, which no one can look up by eye."""

    def describe(self) -> str:
        if self.detail is not None and not self.count:
            return f"{self.expectation}: {self.detail}"
        text = f"{self.expectation}: {self.count} rows"
        if any(self.example_origins):
            examples = [
                f"{origin} (id {row_id})" if origin else f"id {row_id}"
                for row_id, origin in zip(self.example_ids, self.example_origins, strict=True)
            ]
            text += ", e.g. " + ", ".join(examples)
        elif self.example_ids:
            text += ", e.g. ids " + ", ".join(self.example_ids)
        return text


@dataclass
class SuiteResult:
    """Outcome of one suite ('pairs' or 'eval')."""

    name: str
    success: bool
    rows: int
    failures: list[Failure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Check:
    label: str
    expectation: Expectation


def _pairs_frame(table: pa.Table) -> pd.DataFrame:
    """Pandas view of a pairs table: `context` as a turn count, plus derived check columns."""
    if "context" in table.column_names:
        turns = pc.fill_null(pc.list_value_length(table["context"]), 0)
        table = table.drop_columns(["context"]).append_column("context_turns", turns)
    frame = table.to_pandas()
    if {"chosen", "rejected"} <= set(frame.columns):
        both = frame["chosen"].notna() & frame["rejected"].notna()
        # Object dtype keeps None where either side is null: the not-null checks report those
        # rows, and GE's map expectations skip nulls instead of counting them twice.
        differs = (frame["chosen"] != frame["rejected"]).astype(object)
        frame[CHOSEN_DIFFERS] = differs.where(both, None)
    return frame


def _column_checks(columns: Sequence[str], max_chars: int) -> list[_Check]:
    """Length within 1..max_chars and at least one non-whitespace character."""
    import great_expectations.expectations as gxe

    checks = []
    for column in columns:
        checks.append(
            _Check(
                f"expect_column_value_lengths_to_be_between({column})",
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=column, min_value=1, max_value=max_chars
                ),
            )
        )
        checks.append(
            _Check(
                f"expect_column_values_to_match_regex({column}, {NON_WHITESPACE})",
                gxe.ExpectColumnValuesToMatchRegex(
                    column=column,
                    regex=NON_WHITESPACE,
                    description=f"`{column}` is not empty or whitespace only",
                ),
            )
        )
    return checks


def _common_checks(required: Sequence[str]) -> list[_Check]:
    import great_expectations.expectations as gxe

    checks = [
        _Check(
            "expect_table_row_count_to_be_between(min 1)",
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
        )
    ]
    checks += [
        _Check(
            f"expect_column_values_to_not_be_null({column})",
            gxe.ExpectColumnValuesToNotBeNull(column=column),
        )
        for column in required
    ]
    checks.append(
        _Check(
            "expect_column_values_to_be_unique(id)", gxe.ExpectColumnValuesToBeUnique(column="id")
        )
    )
    return checks


def _in_set(column: str, values: Sequence[Any]) -> _Check:
    import great_expectations.expectations as gxe

    return _Check(
        f"expect_column_values_to_be_in_set({column})",
        gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values)),
    )


def _pairs_checks(
    params: ValidateParams, languages: Sequence[str], sources: Sequence[str]
) -> list[_Check]:
    import great_expectations.expectations as gxe

    checks = _common_checks(["id", "source", "prompt", "chosen", "rejected", "lang"])
    checks += _column_checks(["prompt"], params.max_prompt_chars)
    checks += _column_checks(["chosen", "rejected"], params.max_response_chars)
    checks.append(
        _Check(
            f"expect_column_values_to_be_in_set({CHOSEN_DIFFERS})",
            gxe.ExpectColumnValuesToBeInSet(
                column=CHOSEN_DIFFERS,
                value_set=[True],
                description="`chosen` differs from `rejected` "
                f"(derived column `{CHOSEN_DIFFERS}` is True)",
            ),
        )
    )
    checks.append(_in_set("source", sources))
    checks.append(_in_set("lang", languages))
    return checks


def _eval_checks(params: ValidateParams, eval_sets: Sequence[str]) -> list[_Check]:
    checks = _common_checks(["id", "set", "prompt"])
    checks += _column_checks(["prompt"], params.max_prompt_chars)
    checks.append(_in_set("set", eval_sets))
    return checks


class _FixedClock(datetime.datetime):
    """datetime.datetime whose now() is REPORT_TIME."""

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
        return REPORT_TIME.astimezone(tz) if tz else REPORT_TIME.replace(tzinfo=None)


@contextlib.contextmanager
def _reproducible() -> Iterator[None]:
    """Within the block, GE's modules that stamp the report read a fixed clock and draw their
    UUIDs from a seeded generator. Only those modules' names are swapped (never the standard
    library's), so other threads of the process are unaffected."""
    import great_expectations.data_context.store.expectations_store as expectations_store
    import great_expectations.data_context.store.validation_definition_store as definitions
    import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
    import great_expectations.render.view.view as view

    rng = random.Random(0)

    def seeded_uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    fixed_uuid = types.SimpleNamespace(**{**vars(uuid), "uuid4": seeded_uuid4})
    fixed_datetime = types.SimpleNamespace(**{**vars(datetime), "datetime": _FixedClock})
    swaps = [
        (expectations_store, "uuid", fixed_uuid),  # expectation and suite ids
        (definitions, "uuid", fixed_uuid),  # the validation definition id (validation_id)
        (pandas_engine, "datetime", fixed_datetime),  # the batch's ge_load_time
        (view, "datetime", fixed_datetime),  # `?d=<now>` on the pages' logo link
        (view, "uuid4", seeded_uuid4),  # ids of collapsible HTML elements
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    try:
        for module, name, value in swaps:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _context() -> AbstractDataContext:
    """An in-memory GE context with progress bars off and a pandas data source."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.data_sources.add_pandas(DATASOURCE)
    return context


def _run_suite(
    context: AbstractDataContext, name: str, frame: pd.DataFrame, checks: list[_Check]
) -> tuple[SuiteResult, ExpectationSuiteValidationResult]:
    """Run `checks` as suite `name` on `frame`; return our summary and GE's full result."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    datasource = context.data_sources.get(DATASOURCE)
    batch = datasource.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for check in checks:
        suite.add_expectation(check.expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format="COMPLETE",
        run_id=RunIdentifier(run_time=REPORT_TIME),  # the default is now(): a new folder per run
    )

    # GE reports positional indexes; map them back to the table's ids, in suite order.
    frame_ids = frame["id"].tolist() if "id" in frame.columns else [None] * len(frame)
    frame_meta = frame["meta"].tolist() if "meta" in frame.columns else [None] * len(frame)
    by_id = {check.expectation.id: (i, check.label) for i, check in enumerate(checks)}
    failed: list[tuple[int, Failure]] = []
    for res in result.results:
        if res.success:
            continue
        order, label = by_id.get(
            res.expectation_config.id, (len(checks), res.expectation_config.type)
        )
        failure = _failure(label, res.result, res.exception_info, frame_ids, frame_meta)
        failed.append((order, failure))
    failures = [f for _, f in sorted(failed, key=lambda pair: pair[0])]
    return SuiteResult(name, bool(result.success), len(frame), failures), result


def _origin(meta: Any) -> str | None:
    """The `origin` recorded in a row's meta JSON (the raw file and record), if any."""
    try:
        origin = json.loads(meta).get("origin") if isinstance(meta, str) else None
    except (ValueError, AttributeError):
        return None
    return origin if isinstance(origin, str) else None


def _failure(
    label: str,
    result: dict[str, Any],
    exception_info: Any,
    frame_ids: list[Any],
    frame_meta: list[Any],
) -> Failure:
    error = _error_message(exception_info)
    if error is not None:
        return Failure(label, 0, detail=f"GE error: {error}")
    if "unexpected_index_list" not in result:
        return Failure(label, 0, detail=f"observed {result.get('observed_value')!r}")
    examples: list[str] = []
    origins: list[str | None] = []
    for index in result["unexpected_index_list"]:
        row_id = frame_ids[index]
        example = f"<row {index}>" if row_id is None else str(row_id)
        if example not in examples:
            examples.append(example)
            origins.append(_origin(frame_meta[index]))
        if len(examples) == MAX_EXAMPLE_IDS:
            break
    count = int(result.get("unexpected_count") or 0)
    return Failure(label, count, examples, example_origins=origins)


def _error_message(exception_info: Any) -> str | None:
    """GE's error text: exception_info is one info dict, or one per failed metric."""
    if not isinstance(exception_info, dict):
        return None
    infos = [exception_info]
    if "raised_exception" not in exception_info:
        infos = [i for i in exception_info.values() if isinstance(i, dict)]
    messages = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages)) if messages else None


def validate_pairs(
    table: pa.Table,
    params: ValidateParams,
    languages: list[str],
    sources: Sequence[str] = TRAINING_SOURCES,
) -> SuiteResult:
    """Run the pairs suite on a PAIR_SCHEMA table."""
    return _run_suite(
        _context(), "pairs", _pairs_frame(table), _pairs_checks(params, languages, sources)
    )[0]


def validate_eval(
    table: pa.Table, params: ValidateParams, eval_sets: Sequence[str] = EVAL_SETS
) -> SuiteResult:
    """Run the eval suite on an EVAL_SCHEMA table."""
    return _run_suite(_context(), "eval", table.to_pandas(), _eval_checks(params, eval_sets))[0]


def _build_data_docs(context: AbstractDataContext, target: Path) -> Path:
    """Render GE's data docs site for everything validated in `context` into `target`, a new
    folder (the caller's staging place: pages of earlier runs cannot linger)."""
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)  # the ephemeral default writes to /tmp
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(target),
            },
        },
    )
    context.build_data_docs(site_names=[DOCS_SITE])
    return target / "index.html"


def validate_and_report(
    pairs: pa.Table, evals: pa.Table, params: ValidateParams, languages: list[str]
) -> list[SuiteResult]:
    """Run both suites, write the report under `params.report_dir`, raise if any failed.

    Writes `pairs.json` / `eval.json` (GE's complete results), `summary.json` and GE's HTML
    data docs (`data_docs/index.html`), whether or not the suites pass: the whole report is
    written to a staging folder and then replaces the previous one.
    """
    report_dir = Path(params.report_dir).absolute()  # GE needs an absolute site folder
    summary_path = report_dir / "summary.json"
    with (
        replaced(report_dir, keep_on=(ValidationFailed,)) as (staging,),
        _reproducible(),
    ):
        context = _context()
        runs = [
            _run_suite(
                context,
                "pairs",
                _pairs_frame(pairs),
                _pairs_checks(params, languages, TRAINING_SOURCES),
            ),
            _run_suite(context, "eval", evals.to_pandas(), _eval_checks(params, EVAL_SETS)),
        ]
        for suite, result in runs:
            write_json(staging / f"{suite.name}.json", result.to_json_dict())
        index = _build_data_docs(context, staging / "data_docs")
        results = [suite for suite, _ in runs]
        write_json(
            staging / "summary.json",
            {
                "success": all(r.success for r in results),
                "data_docs": str(index.relative_to(staging)),
                "suites": [{**r.to_dict(), "result_file": f"{r.name}.json"} for r in results],
            },
        )
        _raise_if_failed(results, summary_path)
    return results


def _raise_if_failed(results: list[SuiteResult], summary_path: Path) -> None:
    problems = [f"{r.name}: {f.describe()}" for r in results for f in r.failures]
    if not all(r.success for r in results):
        problems = problems or [f"{r.name}: suite failed" for r in results if not r.success]
        raise ValidationFailed(
            f"validation failed: {'; '.join(problems)}  (full report: {summary_path})"
        )
