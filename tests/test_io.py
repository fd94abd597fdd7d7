"""recast.io's staged outputs, on minimal hand-made files: the mechanics only (the data stage
tests run them on real records)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recast import io


def test_replaced_swaps_a_folder_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "stale").mkdir(parents=True)
    (out / "stale" / "a.txt").write_text("old")
    with io.replaced(out, tmp_path / "m.json") as (new_out, new_metrics):
        io.write_text(new_out / "b.txt", "new")
        io.write_json(new_metrics, {"n": 1})
        assert not (out / "b.txt").exists()  # nothing is in place before the block ends
    assert sorted(p.name for p in out.rglob("*")) == ["b.txt"]
    assert io.read_json(tmp_path / "m.json") == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "out"]


def test_replaced_refuses_an_output_the_stage_did_not_write(tmp_path: Path) -> None:
    io.write_text(tmp_path / "a.txt", "old")
    outputs = (tmp_path / "a.txt", tmp_path / "b.txt")
    with (
        pytest.raises(RuntimeError, match="without writing .*b.txt"),
        io.replaced(*outputs) as (
            new_a,
            _,
        ),
    ):
        io.write_text(new_a, "new")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_keep_on_installs_what_was_written_and_undoable_does_not_take_it_back(
    tmp_path: Path,
) -> None:
    report, data = tmp_path / "report", tmp_path / "data.txt"
    io.write_text(data, "old data")
    with pytest.raises(ValueError), io.undoable():
        with io.replaced(data) as (new_data,):
            io.write_text(new_data, "new data")
        assert data.read_text() == "new data"
        with io.replaced(report, keep_on=(ValueError,)) as (new_report,):
            io.write_text(new_report / "summary.txt", "failed")
            raise ValueError("checks failed")
    assert data.read_text() == "old data"
    assert (report / "summary.txt").read_text() == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt", "report"]


def test_undoable_restores_a_removed_file_and_removes_a_new_one(tmp_path: Path) -> None:
    stamp, fresh = tmp_path / "stamp.json", tmp_path / "fresh.txt"
    io.write_text(stamp, "ok")
    with pytest.raises(KeyError), io.undoable():
        io.remove(stamp)
        with io.replaced(fresh) as (new_fresh,):
            io.write_text(new_fresh, "x")
        raise KeyError("a later stage fails")
    assert stamp.read_text() == "ok" and not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stamp.json"]
