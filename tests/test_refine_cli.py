"""`recast refine`: one query or a JSONL file through the one refine path (decode -> check ->
guard), run the way a user runs it, on bundled evaluation prompts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import SAMPLES
from typer.testing import CliRunner

from recast.cli import app
from recast.refiner.check import check

runner = CliRunner()
OFFLINE = ["--set", "tracking.enabled=false"]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def vicuna(n: int) -> list[str]:
    path = SAMPLES / "eval-samples" / "vicuna_eval.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines[:n]]


def test_one_query_prints_x_prime_verdict_and_fallback(in_tmp: Path, smollm2: str) -> None:
    """The packaged SmolLM2 as an (untrained) refiner: whatever it writes, the printed verdict is
    the check's verdict on that x', and the fallback follows the guard."""
    (query,) = vicuna(1)
    code, output = run("refine", query, "--checkpoint", smollm2, *OFFLINE)
    assert code == 0, output
    # x' may span lines; model-loading progress may share the first line
    m = re.search(r"refined: (.*)\nverdict: (\w+) \((.*)\)\nfallback: (yes|no)", output, re.S)
    assert m, output
    x_prime, verdict, reason, fallback = m.groups()
    c = check(query, x_prime, encoder=_minilm())
    assert (verdict, reason) == (c.verdict, c.reason)
    assert fallback == ("yes" if c.harmful else "no")


def _minilm():  # the same encoder as the CLI's default refiner.check_encoder
    from recast.refiner.check import encoder

    return encoder("minilm-l6")


def test_batch_refine_writes_every_query(in_tmp: Path, tiny_lm: str) -> None:
    prompts = vicuna(5)
    queries = in_tmp / "queries.jsonl"
    queries.write_text(
        "".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(prompts)) + "\n"
    )
    out = in_tmp / "out" / "refined.jsonl"
    code, output = run(
        "refine", "--input", str(queries), "--output", str(out), "--checkpoint", tiny_lm,
        "--batch-size", "2", *OFFLINE, "--set", "refiner.max_refined_tokens=6",
    )  # fmt: skip
    assert code == 0, output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts and [r["id"] for r in rows] == list(range(5))
    for r in rows:
        assert r["verdict"] in {"rewrite", "copy", "answers", "drift", "degenerate"}
        assert r["fallback"] == (r["verdict"] in {"answers", "drift", "degenerate"})
        assert isinstance(r["refined"], str) and r["reason"]
    assert f"{len(rows)} queries" in output
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temporary file left


def test_bad_lines_are_reported_with_file_and_line(in_tmp: Path, tiny_lm: str) -> None:
    (good,) = vicuna(1)
    queries = in_tmp / "queries.jsonl"
    queries.write_text(
        json.dumps({"prompt": good}) + "\n{not json\n" + json.dumps({"text": good}) + "\n"
        + json.dumps({"prompt": "  "}) + "\n"
    )  # fmt: skip
    out = in_tmp / "refined.jsonl"
    code, output = run(
        "refine", "--input", str(queries), "--output", str(out), "--checkpoint", tiny_lm, *OFFLINE
    )
    assert code == 1
    flat = " ".join(output.split())
    assert "3 bad line(s)" in flat
    for number in (2, 3, 4):
        assert f"queries.jsonl:{number}:" in flat
    assert "not JSON" in flat and '"prompt" string' in flat and "the prompt is empty" in flat
    assert not out.exists()


def test_nothing_trained_says_what_checkpoint_takes(in_tmp: Path) -> None:
    (query,) = vicuna(1)
    code, output = run("refine", query)  # no champion in this folder's (empty) registry
    assert code == 1
    assert "--checkpoint takes a refiner folder" in " ".join(output.split())
    assert "Traceback" not in output
    code, output = run("refine", query, "--checkpoint", str(in_tmp / "no-such-folder"))
    assert code == 1 and "--checkpoint takes a refiner folder" in " ".join(output.split())


def test_query_or_input_not_both(in_tmp: Path) -> None:
    code, output = run("refine")
    assert code == 1 and "--input" in output
    code, output = run("refine", "--input", "q.jsonl")
    assert code == 1 and "--output" in output
