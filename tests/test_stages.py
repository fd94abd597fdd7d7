"""The data stages end to end on real records, and what they do with bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, SHARED

from recast import io
from recast.config import Params, load_params
from recast.errors import DataError, ValidationFailed
from recast.records import pairs_from_table
from recast.stages import data as stages


def params_for(root: Path, *extra: str) -> Params:
    return load_params(None, [f"ingest.root={root}", *extra])


@pytest.fixture
def raw_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled samples to corrupt."""
    root = tmp_path / "raw"
    shutil.copytree(SAMPLES, root)
    return root


def test_build_on_bundled_samples(in_tmp: Path, smollm2_tokenizer: str) -> None:
    metrics = stages.build(params_for(SAMPLES))
    pairs = metrics["pairs"]
    assert set(pairs["sources"]) == {"hh_rlhf", "oasst1", "alpaca_gpt4"}
    assert pairs["total_pairs"] == sum(s["pairs"] for s in pairs["sources"].values())
    sizes = metrics["split"]["sizes"]
    assert sizes["es"] == 256 and sizes["train"] + sizes["dev"] == pairs["total_pairs"]
    assert metrics["split"]["eval_sets"] == {
        "bpo_test": 17,  # 20 bundled less the rewrite teacher's 3 few-shot examples
        "dolly_eval": 20,
        "self_instruct_eval": 20,
        "vicuna_eval": 10,
    }
    for name in ("ingest", "pairs", "validate", "split"):
        assert (in_tmp / "metrics" / f"{name}.json").exists()
    train = {p.id for p in pairs_from_table(io.read_parquet("data/splits/train.parquet"))}
    dev = {p.id for p in pairs_from_table(io.read_parquet("data/splits/dev.parquet"))}
    es = {p.id for p in pairs_from_table(io.read_parquet("data/splits/es.parquet"))}
    assert not train & dev and es <= train
    assert (in_tmp / "reports" / "validation" / "summary.json").exists()


def test_splits_are_deterministic_from_the_seed(in_tmp: Path, smollm2_tokenizer: str) -> None:
    stages.build(params_for(SAMPLES))
    first = io.read_parquet("data/splits/es.parquet").column("id").to_pylist()
    stages.build(params_for(SAMPLES))
    assert io.read_parquet("data/splits/es.parquet").column("id").to_pylist() == first
    stages.build(params_for(SAMPLES, "split.seed=1"))
    assert io.read_parquet("data/splits/es.parquet").column("id").to_pylist() != first


def test_build_from_shared_release_files(in_tmp: Path, smollm2_tokenizer: str) -> None:
    if not SHARED.exists():
        pytest.skip(f"the shared real data folder {SHARED} is not beside this checkout")
    metrics = stages.build(params_for(SHARED))
    sources = metrics["pairs"]["sources"]
    assert metrics["ingest"]["raw_records"]["train"]["hh_rlhf"] == 2312 + 2354
    assert sources["hh_rlhf"]["pairs"] > 4000
    assert sources["oasst1"]["pairs"] > 350
    assert sources["alpaca_gpt4"]["pairs"] > 1000


def _no_leftovers(folder: Path) -> None:
    if folder.exists():
        assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_broken_json_line_names_file_and_line(in_tmp: Path, raw_copy: Path) -> None:
    path = raw_copy / "oasst1" / "en-validation.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = lines[4][: len(lines[4]) // 2] + "\n"  # a line cut in the middle
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"en-validation.jsonl:5: broken JSON line"):
        stages.ingest(params_for(raw_copy).ingest)
    assert not (in_tmp / "data" / "ingest" / "train" / "oasst1.parquet").exists()
    _no_leftovers(in_tmp / "data")


def test_non_utf8_bytes_are_named(in_tmp: Path, raw_copy: Path) -> None:
    path = raw_copy / "oasst1" / "en-validation.jsonl"
    data = path.read_bytes().splitlines(keepends=True)
    data[2] = data[2].replace(b"the", b"th\xff", 1)
    path.write_bytes(b"".join(data))
    with pytest.raises(DataError, match=r"en-validation.jsonl:3: not valid UTF-8 \(byte 0xff"):
        stages.ingest(params_for(raw_copy).ingest)
    _no_leftovers(in_tmp / "data")


def test_failed_stage_keeps_the_previous_output_whole(in_tmp: Path, raw_copy: Path) -> None:
    stages.ingest(params_for(raw_copy).ingest)
    out = in_tmp / "data" / "ingest" / "train" / "oasst1.parquet"
    before = out.read_bytes()
    path = raw_copy / "oasst1" / "en-validation.jsonl"
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(DataError):
        stages.ingest(params_for(raw_copy).ingest)
    assert out.read_bytes() == before
    _no_leftovers(in_tmp / "data")


def _rewrite_hh(root: Path, edit) -> None:
    path = root / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    with gzip.open(path, "rt") as f:
        records = [json.loads(line) for line in f]
    edit(records)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def test_malformed_record_stops_pairs_naming_field(
    in_tmp: Path, raw_copy: Path, smollm2_tokenizer: str
) -> None:
    _rewrite_hh(raw_copy, lambda rs: rs[3].pop("rejected"))
    p = params_for(raw_copy)
    stages.ingest(p.ingest)
    with pytest.raises(
        DataError,
        match=r"harmless-base-test.jsonl.gz:4: malformed record: "
        r"missing field 'rejected'",
    ):
        stages.build_pairs(p.ingest.out_dir, p.pairs)
    assert not (in_tmp / "data" / "pairs" / "pairs.parquet").exists()


def test_malformed_records_can_be_dropped_and_counted(
    in_tmp: Path, raw_copy: Path, smollm2_tokenizer: str
) -> None:
    def edit(rs: list) -> None:
        rs[3].pop("rejected")
        rs[5]["chosen"] = 42

    _rewrite_hh(raw_copy, edit)
    p = params_for(raw_copy, "pairs.on_malformed=drop")
    stages.ingest(p.ingest)
    metrics = stages.build_pairs(p.ingest.out_dir, p.pairs)
    assert metrics["sources"]["hh_rlhf"]["drops"]["malformed"] == 2


def test_empty_strings_and_huge_prompts_are_dropped_by_reason(
    in_tmp: Path, raw_copy: Path, smollm2_tokenizer: str
) -> None:
    def edit(rs: list) -> None:
        head, _, _ = rs[0]["rejected"].rpartition("\n\nAssistant:")
        rs[0]["rejected"] = head + "\n\nAssistant: "  # empty final reply
        last = rs[1]["chosen"].rsplit("\n\nHuman: ", 1)[1].split("\n\nAssistant:")[0]
        big = (last + " ") * (1_000_000 // len(last) + 1)  # a real prompt blown past 1 MB
        for side in ("chosen", "rejected"):
            head, _, tail = rs[1][side].rpartition(last)
            rs[1][side] = head + big + tail

    _rewrite_hh(raw_copy, edit)
    p = params_for(raw_copy)
    stages.ingest(p.ingest)
    drops = stages.build_pairs(p.ingest.out_dir, p.pairs)["sources"]["hh_rlhf"]["drops"]
    assert drops["empty_response"] >= 1
    assert drops["prompt_too_long"] >= 1


def test_split_refuses_unvalidated_or_changed_data(in_tmp: Path, smollm2_tokenizer: str) -> None:
    p = params_for(SAMPLES)
    stages.ingest(p.ingest)
    stages.build_pairs(p.ingest.out_dir, p.pairs)
    with pytest.raises(DataError, match="has not passed validation"):
        stages.split(p.pairs.out_dir, p.split)
    stages.validate(p.pairs.out_dir, p.validate, p.pairs.languages)
    stages.split(p.pairs.out_dir, p.split)
    pairs = Path(p.pairs.out_dir) / "pairs.parquet"
    table = io.read_parquet(pairs)
    io.write_parquet(pairs, table.slice(0, table.num_rows - 1))
    with pytest.raises(DataError, match="changed after validation"):
        stages.split(p.pairs.out_dir, p.split)


def test_too_small_for_es_size(in_tmp: Path, smollm2_tokenizer: str) -> None:
    p = params_for(SAMPLES, "split.es_size=100000")
    with pytest.raises(DataError, match="lower split.es_size"):
        stages.build(p)


def test_unknown_source_name(in_tmp: Path) -> None:
    with pytest.raises(DataError, match="unknown training source 'reddit'"):
        stages.ingest(params_for(SAMPLES, "ingest.sources=[reddit]").ingest)


def test_missing_root_folder(in_tmp: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        stages.ingest(params_for(in_tmp / "nowhere").ingest)


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every file the data stages wrote under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for top in ("data", "metrics", "reports")
        for p in sorted((folder / top).rglob("*"))
        if p.is_file()
    }


def test_build_twice_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_tokenizer: str
) -> None:
    """Same inputs, same bytes (DVC hashes them into dvc.lock), also from another folder: no
    time stamp, random id or absolute path in any output, GE's report included."""
    runs = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        stages.build(params_for(SAMPLES))
        runs.append(_outputs(folder))
    assert any(path.startswith("reports/validation/data_docs/") for path in runs[0])
    assert runs[0].keys() == runs[1].keys()
    assert [p for p in runs[0] if runs[0][p] != runs[1][p]] == []


def test_failed_build_leaves_every_previous_output_whole(
    in_tmp: Path, raw_copy: Path, smollm2_tokenizer: str
) -> None:
    """A build from a new root whose third stage fails must not leave data/ingest from the new
    root beside data/pairs and data/splits from the old one: all stages are undone."""
    stages.build(params_for(SAMPLES))
    before = _outputs(in_tmp)
    _rewrite_hh(raw_copy, lambda rs: rs[3].pop("rejected"))  # a real record, one field short
    with pytest.raises(DataError, match=r"harmless-base-test.jsonl.gz:4: malformed record"):
        stages.build(params_for(raw_copy))  # ingest succeeds, pairs fails
    assert _outputs(in_tmp) == before
    _no_leftovers(in_tmp / "data")
    _no_leftovers(in_tmp / "metrics")


def test_failed_validation_keeps_the_data_and_reports_the_failure(
    in_tmp: Path, smollm2_tokenizer: str
) -> None:
    stages.build(params_for(SAMPLES))
    before = _outputs(in_tmp)
    # Fewer records, so that ingest and pairs write other bytes before validation fails.
    failing = params_for(SAMPLES, "ingest.max_records=40", "validate.max_prompt_chars=40")
    with pytest.raises(ValidationFailed, match="expect_column_value_lengths_to_be_between"):
        stages.build(failing)
    after = _outputs(in_tmp)
    # The data and its validation stamp are the previous build's, so split still accepts them;
    # the report is the failed run's, since the error message sends the user there.
    data = {p: b for p, b in before.items() if not p.startswith("reports/")}
    assert {p: b for p, b in after.items() if not p.startswith("reports/")} == data
    assert json.loads(after["reports/validation/summary.json"])["success"] is False
    stages.require_validated(in_tmp / "data" / "pairs")
    _no_leftovers(in_tmp)


def test_stage_failing_after_its_first_file_keeps_the_previous_outputs(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages.ingest(params_for(SAMPLES).ingest)
    before = _outputs(in_tmp)
    written = []
    real_write = io.write_parquet

    def fail_second(path: str | Path, table: object) -> None:
        if written:
            raise OSError("disk full")
        written.append(path)
        real_write(path, table)  # type: ignore[arg-type]

    monkeypatch.setattr(io, "write_parquet", fail_second)
    with pytest.raises(OSError, match="disk full"):
        stages.ingest(params_for(SAMPLES, "ingest.max_records=5").ingest)  # other bytes
    assert len(written) == 1
    assert _outputs(in_tmp) == before
    _no_leftovers(in_tmp / "data")


def test_over_long_eval_prompt_is_named_by_file_and_record(
    in_tmp: Path, raw_copy: Path, smollm2_tokenizer: str
) -> None:
    path = raw_copy / "eval-samples" / "bpo_test.json"
    records = json.loads(path.read_text())
    prompt = records[7]["prompt"]
    records[7]["prompt"] = (prompt + " ") * (1_000_000 // len(prompt) + 1)  # 1 MB, as reported
    path.write_text(json.dumps(records))
    p = params_for(raw_copy)
    stages.ingest(p.ingest)
    stages.build_pairs(p.ingest.out_dir, p.pairs)
    with pytest.raises(ValidationFailed) as failed:
        stages.validate(p.pairs.out_dir, p.validate, p.pairs.languages)
    message = str(failed.value)
    assert (
        f"eval: expect_column_value_lengths_to_be_between(prompt): 1 rows, e.g. {path}#7 (id "
    ) in message
