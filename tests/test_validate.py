"""Great Expectations suites on real HH-RLHF pairs and BPO eval prompts, clean and corrupted."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import SAMPLES

from recast.config import ValidateParams
from recast.data.validate import (
    Failure,
    SuiteResult,
    validate_and_report,
    validate_eval,
    validate_pairs,
)
from recast.errors import ValidationFailed
from recast.records import (
    EVAL_SCHEMA,
    PAIR_SCHEMA,
    EvalPrompt,
    PreferencePair,
    Turn,
    eval_table,
    pairs_table,
)

# The bundled samples: the first records of the release files (the same ones ../shared/data
# holds in full), so these tests run, never skip, on a fresh clone.
HH_FILE = SAMPLES / "hh-rlhf" / "helpful-base-test.jsonl.gz"
BPO_FILE = SAMPLES / "eval-samples" / "bpo_test.json"
N_PAIRS = 12


ROLES = {"Human": "user", "Assistant": "assistant"}


def _turns(transcript: str) -> list[tuple[str, str]]:
    """'\\n\\nHuman: …\\n\\nAssistant: …' -> [(speaker, text), …]."""
    parts = re.split(r"\n\n(Human|Assistant): ?", transcript)[1:]
    return [(parts[i], parts[i + 1].strip()) for i in range(0, len(parts), 2)]


def _hh_pair(record: dict[str, str]) -> PreferencePair | None:
    chosen, rejected = _turns(record["chosen"]), _turns(record["rejected"])
    if len(chosen) < 2 or [s for s, _ in chosen[-2:]] != ["Human", "Assistant"]:
        return None
    if not rejected or rejected[-1][0] != "Assistant":
        return None
    return PreferencePair(
        source="hh_rlhf",
        prompt=chosen[-2][1],
        chosen=chosen[-1][1],
        rejected=rejected[-1][1],
        context=tuple(Turn(ROLES[s], t) for s, t in chosen[:-2]),
        meta={"file": HH_FILE.name},
    )


@pytest.fixture(scope="module")
def real_pairs() -> list[PreferencePair]:
    """The first HH-RLHF pairs whose replies are non-empty and distinct (a clean sample)."""
    pairs: list[PreferencePair] = []
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        for line in f:
            pair = _hh_pair(json.loads(line))
            if pair and pair.prompt and pair.chosen and pair.rejected != pair.chosen:
                pairs.append(pair)
            if len(pairs) == N_PAIRS:
                break
    assert any(p.context for p in pairs), "sample should include multi-turn pairs"
    return pairs


@pytest.fixture(scope="module")
def real_evals() -> list[EvalPrompt]:
    records = json.loads(BPO_FILE.read_text(encoding="utf-8"))
    return [
        EvalPrompt(set="bpo_test", prompt=r["prompt"], meta={"file": BPO_FILE.name})
        for r in records
    ]


@pytest.fixture
def params(tmp_path: Path) -> ValidateParams:
    return ValidateParams(report_dir=str(tmp_path / "reports"))


def _pair_rows(pairs: list[PreferencePair]) -> list[dict[str, Any]]:
    return [p.row() for p in pairs]


def _pairs(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)


def _evals(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)


def _failure(result: SuiteResult, expectation: str) -> Failure:
    found = [f for f in result.failures if f.expectation == expectation]
    assert found, f"{expectation} not among {[f.expectation for f in result.failures]}"
    return found[0]


def _long_prompt(prompt: str) -> str:
    return prompt * (1_000_000 // len(prompt) + 1)


# ---- pairs suite ----


def test_clean_real_pairs_pass(real_pairs: list[PreferencePair], params: ValidateParams) -> None:
    result = validate_pairs(pairs_table(real_pairs), params, ["en"])
    assert result == SuiteResult("pairs", True, N_PAIRS, [])


def test_null_chosen_fails_naming_expectation_and_id(
    real_pairs: list[PreferencePair], params: ValidateParams
) -> None:
    rows = _pair_rows(real_pairs)
    rows[3]["chosen"] = None
    result = validate_pairs(_pairs(rows), params, ["en"])
    assert not result.success
    failure = _failure(result, "expect_column_values_to_not_be_null(chosen)")
    assert (failure.count, failure.example_ids) == (1, [rows[3]["id"]])
    # A null is reported once, not again by the length / regex / differs checks.
    assert [f.expectation for f in result.failures] == [failure.expectation]


@pytest.mark.parametrize("blank", ["", "  \n\t "])
def test_empty_or_whitespace_chosen_fails(
    real_pairs: list[PreferencePair], params: ValidateParams, blank: str
) -> None:
    rows = _pair_rows(real_pairs)
    rows[5]["chosen"] = blank
    result = validate_pairs(_pairs(rows), params, ["en"])
    assert not result.success
    regex = _failure(result, r"expect_column_values_to_match_regex(chosen, \S)")
    assert (regex.count, regex.example_ids) == (1, [rows[5]["id"]])
    if not blank:
        length = _failure(result, "expect_column_value_lengths_to_be_between(chosen)")
        assert length.example_ids == [rows[5]["id"]]


def test_duplicate_ids_fail(real_pairs: list[PreferencePair], params: ValidateParams) -> None:
    rows = _pair_rows(real_pairs)
    rows.append(dict(rows[2]))
    result = validate_pairs(_pairs(rows), params, ["en"])
    failure = _failure(result, "expect_column_values_to_be_unique(id)")
    assert (failure.count, failure.example_ids) == (2, [rows[2]["id"]])
    assert result.rows == N_PAIRS + 1


def test_chosen_equal_to_rejected_fails(
    real_pairs: list[PreferencePair], params: ValidateParams
) -> None:
    same = replace(real_pairs[4], rejected=real_pairs[4].chosen)
    result = validate_pairs(pairs_table([*real_pairs[:4], same]), params, ["en"])
    failure = _failure(result, "expect_column_values_to_be_in_set(chosen_differs_from_rejected)")
    assert (failure.count, failure.example_ids) == (1, [same.id])
    assert len(result.failures) == 1


def test_unknown_source_fails(real_pairs: list[PreferencePair], params: ValidateParams) -> None:
    rows = _pair_rows(real_pairs)
    rows[0]["source"] = "bpo_test"  # an eval set, not a training source
    result = validate_pairs(_pairs(rows), params, ["en"])
    failure = _failure(result, "expect_column_values_to_be_in_set(source)")
    assert (failure.count, failure.example_ids) == (1, [rows[0]["id"]])

    # The caller can narrow the known sources.
    narrowed = validate_pairs(pairs_table(real_pairs), params, ["en"], sources=["oasst1"])
    assert _failure(narrowed, "expect_column_values_to_be_in_set(source)").count == N_PAIRS


def test_wrong_language_fails(real_pairs: list[PreferencePair], params: ValidateParams) -> None:
    rows = _pair_rows(real_pairs)
    rows[7]["lang"] = "de"
    result = validate_pairs(_pairs(rows), params, ["en"])
    failure = _failure(result, "expect_column_values_to_be_in_set(lang)")
    assert (failure.count, failure.example_ids) == (1, [rows[7]["id"]])

    everything = validate_pairs(pairs_table(real_pairs), params, ["de", "fr"])
    failure = _failure(everything, "expect_column_values_to_be_in_set(lang)")
    assert failure.count == N_PAIRS
    assert len(failure.example_ids) == 5  # capped


def test_megabyte_prompt_fails_length(
    real_pairs: list[PreferencePair], params: ValidateParams
) -> None:
    huge = replace(real_pairs[1], prompt=_long_prompt(real_pairs[1].prompt))
    assert len(huge.prompt) > 1_000_000
    result = validate_pairs(pairs_table([real_pairs[0], huge]), params, ["en"])
    failure = _failure(result, "expect_column_value_lengths_to_be_between(prompt)")
    assert (failure.count, failure.example_ids) == (1, [huge.id])
    assert len(result.failures) == 1


def test_response_length_uses_response_limit(
    real_pairs: list[PreferencePair], params: ValidateParams
) -> None:
    longest = max(real_pairs, key=lambda p: len(p.chosen))
    tight = replace(params, max_response_chars=len(longest.chosen) - 1)
    result = validate_pairs(pairs_table(real_pairs), tight, ["en"])
    failure = _failure(result, "expect_column_value_lengths_to_be_between(chosen)")
    assert longest.id in failure.example_ids


def test_missing_column_fails_with_ge_error(
    real_pairs: list[PreferencePair], params: ValidateParams
) -> None:
    table = pairs_table(real_pairs).drop_columns(["lang"])
    result = validate_pairs(table, params, ["en"])
    failure = _failure(result, "expect_column_values_to_not_be_null(lang)")
    assert failure.detail is not None and '"lang"' in failure.detail
    assert "does not exist" in failure.describe()


def test_empty_pairs_table_fails(params: ValidateParams) -> None:
    result = validate_pairs(pairs_table([]), params, ["en"])
    assert (result.success, result.rows) == (False, 0)
    assert [f.expectation for f in result.failures] == [
        "expect_table_row_count_to_be_between(min 1)"
    ]


# ---- eval suite ----


def test_clean_real_evals_pass(real_evals: list[EvalPrompt], params: ValidateParams) -> None:
    result = validate_eval(eval_table(real_evals), params)
    assert result == SuiteResult("eval", True, len(real_evals), [])


def test_eval_corruptions_fail(real_evals: list[EvalPrompt], params: ValidateParams) -> None:
    rows = [e.row() for e in real_evals]
    rows[0]["prompt"] = None
    rows[1]["prompt"] = " \n "
    rows[2]["set"] = "hh_rlhf"
    rows[3]["prompt"] = _long_prompt(rows[3]["prompt"])
    rows[4]["id"] = rows[5]["id"]
    result = validate_eval(_evals(rows), params)
    assert not result.success
    expected = {
        "expect_column_values_to_not_be_null(prompt)": [rows[0]["id"]],
        "expect_column_values_to_be_unique(id)": [rows[5]["id"]],
        "expect_column_value_lengths_to_be_between(prompt)": [rows[3]["id"]],
        r"expect_column_values_to_match_regex(prompt, \S)": [rows[1]["id"]],
        "expect_column_values_to_be_in_set(set)": [rows[2]["id"]],
    }
    assert {f.expectation: f.example_ids for f in result.failures} == expected


def test_empty_eval_table_fails(params: ValidateParams) -> None:
    result = validate_eval(eval_table([]), params)
    assert not result.success
    assert result.failures[0].expectation == "expect_table_row_count_to_be_between(min 1)"


# ---- validate_and_report ----


def test_report_written_on_success(
    real_pairs: list[PreferencePair], real_evals: list[EvalPrompt], params: ValidateParams
) -> None:
    results = validate_and_report(pairs_table(real_pairs), eval_table(real_evals), params, ["en"])
    assert [(r.name, r.success) for r in results] == [("pairs", True), ("eval", True)]
    report = Path(params.report_dir)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["success"] is True
    assert [s["rows"] for s in summary["suites"]] == [N_PAIRS, len(real_evals)]
    assert (report / "data_docs" / "index.html").is_file()


def test_failure_raises_after_writing_full_report(
    real_pairs: list[PreferencePair], real_evals: list[EvalPrompt], params: ValidateParams
) -> None:
    rows = _pair_rows(real_pairs)
    rows[3]["chosen"] = None
    rows[6]["chosen"] = None
    rows.append(dict(rows[0]))
    report = Path(params.report_dir)

    with pytest.raises(ValidationFailed) as excinfo:
        validate_and_report(_pairs(rows), eval_table([]), params, ["en"])

    message = str(excinfo.value)
    assert message.startswith("validation failed: ")
    assert (
        f"pairs: expect_column_values_to_not_be_null(chosen): 2 rows, "
        f"e.g. ids {rows[3]['id']}, {rows[6]['id']}"
    ) in message
    assert f"pairs: expect_column_values_to_be_unique(id): 2 rows, e.g. ids {rows[0]['id']}" in (
        message
    )
    assert "eval: expect_table_row_count_to_be_between(min 1)" in message
    assert f"(full report: {report / 'summary.json'})" in message

    summary = json.loads((report / "summary.json").read_text())
    assert summary["success"] is False
    pairs_summary, eval_summary = summary["suites"]
    assert (pairs_summary["name"], pairs_summary["success"], pairs_summary["rows"]) == (
        "pairs",
        False,
        N_PAIRS + 1,
    )
    assert {f["expectation"] for f in pairs_summary["failures"]} == {
        "expect_column_values_to_not_be_null(chosen)",
        "expect_column_values_to_be_unique(id)",
    }
    assert eval_summary["success"] is False

    # GE's complete result per suite, with the unexpected row indexes.
    ge_pairs = json.loads((report / "pairs.json").read_text())
    assert ge_pairs["success"] is False
    null_chosen = [
        r
        for r in ge_pairs["results"]
        if r["expectation_config"]["type"] == "expect_column_values_to_not_be_null"
        and r["expectation_config"]["kwargs"]["column"] == "chosen"
    ]
    assert null_chosen[0]["result"]["unexpected_index_list"] == [3, 6]
    assert json.loads((report / "eval.json").read_text())["success"] is False

    # GE's own HTML rendering: an index plus one validation page per suite.
    index = (report / "data_docs" / "index.html").read_text()
    assert "Great Expectations" in index
    pages = sorted(p.name for p in (report / "data_docs" / "validations").rglob("*.html"))
    assert pages == ["recast-eval.html", "recast-pairs.html"]


def test_rerun_replaces_data_docs(
    real_pairs: list[PreferencePair], real_evals: list[EvalPrompt], params: ValidateParams
) -> None:
    for _ in range(2):
        validate_and_report(pairs_table(real_pairs), eval_table(real_evals), params, ["en"])
    report = Path(params.report_dir)
    assert len(list((report / "data_docs" / "validations").rglob("*.html"))) == 2
    assert sorted(p.name for p in report.iterdir()) == [
        "data_docs",
        "eval.json",
        "pairs.json",
        "summary.json",
    ]


def test_import_does_not_load_great_expectations() -> None:
    code = "import sys, recast.data.validate; print('great_expectations' in sys.modules)"
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(src)},
    )
    assert out.stdout.strip() == "False"
