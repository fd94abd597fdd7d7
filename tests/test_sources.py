"""Each source module on real records in its published schema."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLES

from recast.data import alpaca_gpt4, chatbot_arena, eval_sets, hh_rlhf, oasst1
from recast.data.common import Drop
from recast.data.raw import read_records
from recast.records import EvalPrompt, PreferencePair


def split(items: list) -> tuple[list[PreferencePair], Counter[str]]:
    pairs = [i for i in items if isinstance(i, PreferencePair)]
    drops = Counter(i.reason for i in items if isinstance(i, Drop))
    return pairs, drops


def test_hh_rlhf_last_human_turn_is_x_and_earlier_turns_are_context() -> None:
    path = SAMPLES / "hh-rlhf" / "helpful-base-test.jsonl.gz"
    records = list(read_records(path))
    pairs, drops = split(list(hh_rlhf.to_pairs(records)))
    assert len(pairs) + sum(drops.values()) == len(records) == 160
    multi = next(p for p in pairs if p.context)
    raw = next(r for _, r in records if multi.chosen in r["chosen"] and multi.prompt in r["chosen"])
    assert raw["chosen"].rstrip().endswith(multi.chosen)
    assert raw["rejected"].rstrip().endswith(multi.rejected)
    # x is the human turn right before the final reply
    assert (
        raw["chosen"].rsplit("\n\nHuman:", 1)[1].split("\n\nAssistant:")[0].strip() == multi.prompt
    )
    assert multi.context[0].role == "user" and multi.context[-1].role == "assistant"
    assert all(p.source == "hh_rlhf" for p in pairs)


def test_oasst1_rank0_is_chosen_and_context_walks_to_the_root() -> None:
    records = list(read_records(SAMPLES / "oasst1" / "en-validation.jsonl"))
    by_id = {r["message_id"]: r for _, r in records}
    pairs, drops = split(list(oasst1.to_pairs(records)))
    assert len(pairs) > 50
    assert drops["fewer_than_two_ranked_replies"] > 0
    for pair in pairs:
        chosen = by_id[pair.meta["chosen_id"]]
        rejected = by_id[pair.meta["rejected_id"]]
        assert chosen["rank"] == 0 and rejected["rank"] > 0
        assert chosen["parent_id"] == rejected["parent_id"] == pair.meta["message_id"]
        assert by_id[pair.meta["message_id"]]["text"] == pair.prompt
        # context alternates user / assistant and ends with an assistant turn
        roles = [t.role for t in pair.context]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
    assert any(p.context for p in pairs)


def test_alpaca_converted_schema() -> None:
    records = list(read_records(SAMPLES / "alpaca-gpt4" / "comparison_gpt4_data_en.json"))
    pairs, _ = split(list(alpaca_gpt4.to_pairs(records)))
    first = records[0][1]
    assert pairs[0].prompt == first["instruction"]
    assert (pairs[0].chosen, pairs[0].rejected) == tuple(first["output"])
    with_input = next(p for p, (_, r) in zip(pairs, records, strict=False) if r["input"])
    assert "\n\n" in with_input.prompt


def test_alpaca_release_v2_schema_fixture() -> None:
    records = list(read_records(FIXTURES / "alpaca_comparison_v2_schema_fixture.json"))
    pairs, drops = split(list(alpaca_gpt4.to_pairs(records)))
    assert len(pairs) == 5 and drops == {"tied_scores": 1}
    best = max(records[0][1]["responses_and_scores"], key=lambda r: r["score"])
    assert pairs[0].chosen == best["response"]


def test_chatbot_arena_schema_fixture_winners_ties_and_multi_turn() -> None:
    records = list(read_records(FIXTURES / "chatbot_arena_schema_fixture.jsonl"))
    pairs, drops = split(list(chatbot_arena.to_pairs(records)))
    assert drops == {"tie": 1, "tie_bothbad": 1, "multi_turn": 1}
    assert len(pairs) == 5
    a_wins = records[0][1]
    assert pairs[0].chosen == a_wins["conversation_a"][1]["content"]
    b_wins = records[1][1]
    assert pairs[1].chosen == b_wins["conversation_b"][1]["content"]
    assert pairs[1].meta["model_chosen"] == "koala-13b"
    assert all(p.lang == "en" for p in pairs)


@pytest.mark.parametrize(
    ("name", "count", "has_reference"),
    [
        ("bpo_test", 17, True),  # 20 bundled less the rewrite teacher's 3 few-shot examples
        ("dolly_eval", 20, True),
        ("vicuna_eval", 10, False),
        ("self_instruct_eval", 20, True),
    ],
)
def test_eval_sets(name: str, count: int, has_reference: bool) -> None:
    path = SAMPLES / "eval-samples" / eval_sets.FILES[name]
    out = list(eval_sets.to_prompts(name, read_records(path)))
    prompts = [p for p in out if isinstance(p, EvalPrompt)]
    dropped = [d for d in out if not isinstance(d, EvalPrompt)]
    assert len(prompts) == count
    assert len(dropped) == (3 if name == "bpo_test" else 0)
    assert all(d.reason == "teacher_example" for d in dropped)
    assert all(p.set == name and p.prompt.strip() for p in prompts)
    assert all((p.reference is not None) == has_reference for p in prompts)
    if name == "bpo_test":
        assert prompts[0].meta["bad_res"]
    ids = [p.id for p in prompts]
    assert len(set(ids)) == len(ids)


def test_ids_are_stable_content_hashes() -> None:
    records = list(read_records(SAMPLES / "hh-rlhf" / "harmless-base-test.jsonl.gz", limit=5))
    first = [p.id for p in hh_rlhf.to_pairs(records)]
    again = [p.id for p in hh_rlhf.to_pairs(records)]
    assert first == again and len(set(first)) == 5


# --- malformed raw input: every error names the file, the record and the problem -------------


def _hh_line() -> dict:
    with gzip.open(SAMPLES / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt") as f:
        return json.loads(next(f))


def test_missing_field_is_named(tmp_path: Path) -> None:
    rec = _hh_line()
    del rec["rejected"]
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (drop,) = hh_rlhf.to_pairs(read_records(path))
    assert drop.reason == "malformed" and "missing field 'rejected'" in drop.detail
    assert drop.origin == f"{path}:1"


def test_wrong_type_is_named(tmp_path: Path) -> None:
    rec = _hh_line()
    rec["chosen"] = ["not", "a", "string"]
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (drop,) = hh_rlhf.to_pairs(read_records(path))
    assert "field 'chosen' should be str, got list" in drop.detail
