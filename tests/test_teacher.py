"""The rewrite teacher's data (BPO's optimizer data and the warm start's), the check on it, the
few-shot examples kept out of evaluation, and the warm start ρ_sft's mechanics. Real records
throughout: training queries from the bundled HH-RLHF sample, BPO-test items as rewrites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES
from test_search import real_pairs

from recast import io
from recast.config import load_params
from recast.data import eval_sets
from recast.data.common import Drop
from recast.data.fewshot import BPO_TEST_ITEMS, EXAMPLES, is_example
from recast.errors import RecastError
from recast.records import PreferencePair
from recast.refiner import teacher
from recast.refiner.teacher import Rewrite, extract_rewrite, keep
from recast.refiner.warmstart import fits, start_spec, warm_start
from recast.stages.refiner import rewrites as rewrites_stage
from recast.stages.refiner import warmstart as warmstart_stage

BPO_TEST = json.loads((SAMPLES / "eval-samples" / "bpo_test.json").read_text())


def bpo_rows() -> list[Rewrite]:
    """BPO-test's own (prompt -> optimized_prompt) as teacher rewrites: 18 that differ, 2 equal."""
    return [
        Rewrite(str(i), r["prompt"], r["optimized_prompt"], r["optimized_prompt"])
        for i, r in enumerate(BPO_TEST)
    ]


def test_few_shot_examples_are_bpo_test_rewrites_that_differ_from_the_prompt() -> None:
    for i, (x, x_prime) in zip(BPO_TEST_ITEMS, EXAMPLES, strict=True):
        assert BPO_TEST[i]["prompt"] == x and BPO_TEST[i]["optimized_prompt"] == x_prime
        assert x != x_prime
    assert min(BPO_TEST_ITEMS) >= 5  # not among the 5 prompts a set the defaults evaluate


def test_few_shot_examples_are_dropped_from_the_evaluation_set() -> None:
    records = [(f"bpo_test.json:{i}", r) for i, r in enumerate(BPO_TEST)]
    out = list(eval_sets.to_prompts("bpo_test", records))
    drops = [d for d in out if isinstance(d, Drop)]
    kept = [p.prompt for p in out if not isinstance(p, Drop)]
    assert [d.origin for d in drops] == [f"bpo_test.json:{i}" for i in BPO_TEST_ITEMS]
    assert {d.reason for d in drops} == {"teacher_example"}
    assert len(kept) == 17 and not any(is_example(p) for p in kept)
    assert kept[:5] == [r["prompt"] for r in BPO_TEST[:5]]  # the default evaluation is unchanged
    assert is_example("  generate a CREATIVE way of advertising a new razor product. ")


def test_extract_rewrite_unwraps_the_prefilled_label_and_sections() -> None:
    assert extract_rewrite("Rewritten instruction: Name three fruits.") == "Name three fruits."
    assert extract_rewrite('Rewrite: "Name three fruits."') == "Name three fruits."
    reply = "[Instruction]\nName three fruits, with colours.\n\n[Good response]\nApple: red"
    assert extract_rewrite(reply) == "Name three fruits, with colours."


def test_the_guard_keeps_rewrites_and_drops_copies_and_pasted_answers() -> None:
    """With the guard only verdict `rewrite` is kept: an identity rewrite teaches nothing, and a
    teacher x' that carries y+ (here: x followed by the first 150 characters of BPO-test's good
    response) teaches the student to answer. Without it, BPO's rule keeps every x' != x."""
    rows = bpo_rows()
    pasted = [
        Rewrite(f"p{i}", r["prompt"], f"{r['prompt']} {r['good_res'][:150]}", "")
        for i, r in enumerate(BPO_TEST[:6])
    ]
    guarded = keep(rows + pasted, guard=True, check_encoder=None)
    ids = {r.id for r in guarded.pairs}
    assert not any(i.startswith("p") for i in ids)  # no pasted answer survives
    assert "0" not in ids and "1" not in ids  # the identity rewrites are copies
    assert guarded.verdicts["copy"] == 2 and guarded.dropped == len(rows) + 6 - len(ids)
    assert len(ids) >= 12  # most of BPO-test's own rewrites pass (the check's 4.8% flag rate)
    paper = keep(rows + pasted, guard=False, check_encoder=None)
    assert len(paper.pairs) == 18 + 6  # BPO's rule: non-empty and not x
    m = guarded.metrics()
    verdicts = ("rewrite", "copy", "answers", "drift", "degenerate")
    assert m["teacher_kept"] == len(ids)
    assert sum(m[f"teacher_{v}"] for v in verdicts) == len(rows) + 6


def standalone_pairs(n: int) -> list:
    """The first n HH-RLHF pairs whose query has no earlier turns (the teacher's queries)."""
    return [p for p in real_pairs(60) if not p.context][:n]


def test_the_teacher_rewrites_only_queries_that_stand_alone() -> None:
    """A follow-up turn cannot be rewritten without its conversation: skipped, order kept."""
    pairs = real_pairs(60)
    assert any(p.context for p in pairs[:10])  # the sample has follow-ups among its first
    chosen = teacher.teacher_queries(pairs, 5)
    assert chosen == standalone_pairs(5) and not any(p.context for p in chosen)
    assert teacher.teacher_queries(pairs, None) == [p for p in pairs if not p.context]


def test_the_teacher_prompt_shows_the_input_apart_and_x_prime_keeps_it() -> None:
    """An instruction with an input (Alpaca's "instruction\n\ninput"): the teacher sees the
    input under its own header, and x' is its rewritten instruction + x's input verbatim, even
    where its reply runs on into a copy of the input or an [Input] header."""
    x = "Calculate the area of the triangle.\n\nBase: 5cm; Height: 6cm"
    prompt = teacher.teacher_prompt(PreferencePair("t", x, "It is 15 cm2.", "Triangles."))
    assert "[Instruction]\nCalculate the area of the triangle.\n\n[Input" in prompt
    assert "]\nBase: 5cm; Height: 6cm\n\n[Bad response]" in prompt
    reply = "Rewritten instruction: Calculate the area of the triangle in cm2.\n\nBase: 5cm"
    assert teacher.teacher_x_prime(x, reply) == (
        "Calculate the area of the triangle in cm2.\n\nBase: 5cm; Height: 6cm"
    )
    headed = "Rewritten instruction: Find the area.\n[Input, passed on]\nBase: 5cm"
    assert teacher.teacher_x_prime(x, headed) == "Find the area.\n\nBase: 5cm; Height: 6cm"
    plain = "How do I build a PC?"
    assert teacher.teacher_x_prime(plain, "Rewritten instruction: How do I build a PC?") == plain


def test_rewrites_are_read_from_the_stage_file_and_rewritten_when_stale(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recast.records import pairs_table

    pairs = standalone_pairs(3)
    io.write_parquet(in_tmp / "data/splits/train.parquet", pairs_table(pairs))
    params = load_params(None, ["bpo.train_size=3", "refiner.check_encoder=null"])
    calls: list[int] = []

    def scripted(p: object, ps: list) -> tuple[list[dict[str, str]], float]:
        calls.append(len(ps))
        return [{"id": q.id, "x": q.prompt, "x_prime": q.prompt + "?", "raw": ""} for q in ps], 0.1

    monkeypatch.setattr(teacher, "_written", scripted)
    assert rewrites_stage(params)["reused"] is False
    assert calls == [3] and Path(params.bpo.rewrites).exists()
    first = teacher.rewrites(params, pairs)
    assert calls == [3] and [r.x_prime for r in first] == [p.prompt + "?" for p in pairs]
    assert rewrites_stage(params)["reused"] is True and calls == [3]  # read, not rewritten
    teacher.rewrites(params, pairs[:2])  # other queries: the file is stale for them
    assert calls == [3, 2]
    stored = io.read_json(params.bpo.rewrites)
    assert len(stored["rows"]) == 3  # only the stage writes the file


def test_more_queries_cost_the_teacher_only_the_new_ones(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bpo.train_size 3 -> 5: the stage keeps the 3 stored rows and the teacher writes 2; a file
    written by another teacher prompt is not reused."""
    from recast.records import pairs_table

    pairs = standalone_pairs(5)
    io.write_parquet(in_tmp / "data/splits/train.parquet", pairs_table(pairs))
    calls: list[list[str]] = []

    def scripted(p: object, ps: list) -> tuple[list[dict[str, str]], float]:
        calls.append([q.id for q in ps])
        return [{"id": q.id, "x": q.prompt, "x_prime": q.prompt + "?", "raw": ""} for q in ps], 0.1

    monkeypatch.setattr(teacher, "_written", scripted)
    small = load_params(None, ["bpo.train_size=3", "refiner.check_encoder=null"])
    rewrites_stage(small)
    stored = io.read_json(small.bpo.rewrites)
    stored["rows"][0]["x_prime"] = "kept as stored"  # proves the row is read, not rewritten
    io.write_json(small.bpo.rewrites, stored)
    large = load_params(None, ["bpo.train_size=5", "refiner.check_encoder=null"])
    assert rewrites_stage(large)["reused_rows"] == 3
    assert calls == [[p.id for p in pairs[:3]], [p.id for p in pairs[3:]]]
    rows = io.read_json(large.bpo.rewrites)["rows"]
    assert [r["id"] for r in rows] == [p.id for p in pairs] and rows[0][
        "x_prime"
    ] == "kept as stored"
    assert teacher.stored(large.bpo, pairs) is not None  # the stage file now holds all five

    monkeypatch.setattr(teacher, "TEACHER", teacher.TEACHER + " ")  # another teacher prompt
    io.write_json(small.bpo.rewrites, stored)
    rewrites_stage(large)
    assert calls[-1] == [p.id for p in pairs]  # nothing reused


def test_bpo_learns_only_the_teacher_rewrites_the_check_keeps(in_tmp: Path, tiny_lm: str) -> None:
    """`recast bpo` on a stored teacher file for 6 real HH-RLHF queries: 2 rewrites, 2 copies
    and 2 x' that paste y+ after x. With the guard the optimizer's data are the 2 rewrites, and
    the metrics count every verdict."""
    from recast.records import pairs_table
    from recast.stages.baselines import bpo as bpo_stage

    pairs = standalone_pairs(6)
    io.write_parquet(in_tmp / "data/splits/train.parquet", pairs_table(pairs))
    x_primes = [
        "Please answer in detail, step by step: " + pairs[0].prompt,
        "Please answer in detail, step by step: " + pairs[1].prompt,
        pairs[2].prompt,
        pairs[3].prompt,
        f"{pairs[4].prompt} {pairs[4].chosen[:150]}",
        f"{pairs[5].prompt} {pairs[5].chosen[:150]}",
    ]
    overrides = [
        "bpo.train_size=6", f"bpo.model={tiny_lm}", "bpo.batch_size=2", "bpo.max_length=64",
        "bpo.epochs=1", "refiner.check_encoder=null", "tracking.enabled=false",
    ]  # fmt: skip
    params = load_params(None, overrides)
    rows = [
        {"id": p.id, "x": p.prompt, "x_prime": xp, "raw": xp}
        for p, xp in zip(pairs, x_primes, strict=True)
    ]
    io.write_json(params.bpo.rewrites, {"key": teacher.key(params.bpo, pairs), "rows": rows})
    metrics = bpo_stage(params)
    kept = io.read_parquet(in_tmp / "runs/bpo/pairs.parquet").to_pylist()
    assert [r["optimized"] for r in kept] == x_primes[:2]
    assert metrics["teacher_rewrite"] == 2 and metrics["teacher_copy"] == 2
    assert metrics["teacher_answers"] == 2 and metrics["teacher_dropped"] == 4
    assert metrics["optimized_kept"] == 2 and metrics["final_loss"] > 0


def test_warm_start_fits_the_teacher_rewrites(tiny_lm: str) -> None:
    """ρ_sft's CE of x' given x (Eq. 12's first term, ω = 0) falls over the warm start."""
    from recast.refiner.model import Refiner

    params = load_params(None, ["refiner.warm_start_epochs=6", "refiner.batch_size=4"])
    refiner = Refiner.load(tiny_lm)
    rows = fits(refiner, bpo_rows()[2:10], 32)
    assert len(rows) >= 6
    stats = warm_start(refiner, rows, params.refiner)
    assert len(stats) == 6 * -(-len(rows) // 4)
    assert stats[-1].ce < stats[0].ce and all(s.kl == 0 for s in stats)


def test_start_spec_and_the_switched_off_stage(in_tmp: Path) -> None:
    on = load_params(None, ["refiner.warm_start=true", "refiner.warm_start_dir=ws"])
    with pytest.raises(RecastError, match="ws/refiner is missing"):
        start_spec(on.refiner)
    off = load_params(None, ["refiner.warm_start=false", "refiner.warm_start_dir=ws"])
    assert start_spec(off.refiner) == off.refiner.model
    assert warmstart_stage(off) == {"warm_start": False}
    assert (in_tmp / "ws" / "skipped.json").exists()
