"""How far a judge can be trusted: its agreement with labelled preference pairs, beside the
trivial rule "the longer answer wins" on the same pairs and on the length-balanced subset.

A judge that only tracks length agrees with labels about as often as the rule does (78 % on
BPO-test pairs, where the better answer is usually the longer one), so agreement alone proves
nothing; the length-balanced subset (the better answer is not the longer one, or the two are
within 20 % of each other) is where a judge must beat the rule.

Labelled pairs are read in their published schemas: BPO-test (`prompt`, `good_res`, `bad_res`),
HH-RLHF transcripts (`chosen`, `rejected`), or recast's own pairs (`prompt`, `chosen`,
`rejected`), from .json, .jsonl, .jsonl.gz or .parquet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from recast.data.raw import read_records
from recast.errors import RecastError
from recast.evaluation.bootstrap import mean_difference
from recast.evaluation.judge import Judged
from recast.records import PreferencePair

BALANCE_TOLERANCE = 0.2
"""Two answers whose lengths differ by at most this share of the longer are 'the same length'."""


class Judge(Protocol):
    """Anything that judges "ours" against "other" prompt by prompt."""

    def judge(self, questions: list[str], ours: list[str], other: list[str]) -> Judged: ...


# -- labelled pairs ------------------------------------------------------------------------------


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) for every record of a file, `where` naming the file and record: the
    raw-data reader for JSON files (file:line / file#index), parquet row by row."""
    if path.name.endswith(".parquet"):
        from recast import io

        for i, row in enumerate(io.read_parquet(path).to_pylist()):
            yield f"{path}#{i}", row
        return
    yield from read_records(path)


def _text(where: str, record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecastError(f"{where}: field {key!r} is missing or empty")
    return value


def _pair(where: str, record: Any) -> PreferencePair:
    from recast.data.hh_rlhf import parse_transcript
    from recast.data.raw import Malformed

    if not isinstance(record, dict):
        raise RecastError(f"{where}: expected an object, got {type(record).__name__}")
    if "good_res" in record or "bad_res" in record:  # BPO-test
        return PreferencePair(
            source="bpo_test",
            prompt=_text(where, record, "prompt"),
            chosen=_text(where, record, "good_res"),
            rejected=_text(where, record, "bad_res"),
            meta={"origin": where},
        )
    if "chosen" in record and "rejected" in record:
        if "prompt" in record:  # recast's own pairs
            return PreferencePair(
                source=str(record.get("source") or "pairs"),
                prompt=_text(where, record, "prompt"),
                chosen=_text(where, record, "chosen"),
                rejected=_text(where, record, "rejected"),
                meta={"origin": where},
            )
        try:  # HH-RLHF: two transcripts that share all turns but the last reply
            chosen = parse_transcript(_text(where, record, "chosen"))
            rejected = parse_transcript(_text(where, record, "rejected"))
        except Malformed as e:
            raise RecastError(f"{where}: {e}") from e
        if len(chosen) < 2 or chosen[-2].role != "user" or rejected[-1].role != "assistant":
            raise RecastError(f"{where}: the transcripts do not end in a user turn and a reply")
        return PreferencePair(
            source="hh_rlhf",
            prompt=chosen[-2].text,
            chosen=chosen[-1].text,
            rejected=rejected[-1].text,
            meta={"origin": where},
        )
    raise RecastError(
        f"{where}: not a labelled pair (expected prompt/good_res/bad_res, chosen/rejected "
        f"transcripts, or prompt/chosen/rejected; got keys {sorted(record)})"
    )


def read_labelled_pairs(path: str | Path, limit: int | None = None) -> list[PreferencePair]:
    """The labelled pairs in `path` (first `limit`), the better answer as `chosen`."""
    path = Path(path)
    if not path.is_file():
        raise RecastError(f"labelled pairs file not found: {path}")
    pairs: list[PreferencePair] = []
    for where, record in _records(path):
        if limit is not None and len(pairs) >= limit:
            break
        pairs.append(_pair(where, record))
    if not pairs:
        raise RecastError(f"{path}: no labelled pairs")
    return pairs


# -- the length rule -----------------------------------------------------------------------------


def length(text: str) -> int:
    """An answer's length in words: independent of any tokenizer, close to what a reader sees."""
    return len(text.split())


def longer_wins(better: str, worse: str) -> bool | None:
    """The rule "the longer answer wins" on one pair: True if it picks the better answer, False
    if it picks the worse, None when the lengths are equal (the rule cannot choose)."""
    a, b = length(better), length(worse)
    return None if a == b else a > b


def is_balanced(better: str, worse: str, tolerance: float = BALANCE_TOLERANCE) -> bool:
    """A pair the length rule cannot win by design: the better answer is not the longer one, or
    the two lengths are within `tolerance` of the longer."""
    a, b = length(better), length(worse)
    return a <= b or abs(a - b) <= tolerance * max(a, b)


def _share(hits: Sequence[bool | None]) -> float | None:
    """Share of True, ties (None) counting as not agreeing; None for no pairs."""
    return sum(h is True for h in hits) / len(hits) if hits else None


# -- measuring a judge ---------------------------------------------------------------------------


@dataclass
class Measurement:
    """A judge against labelled pairs (shares as fractions of `n` unless named otherwise)."""

    n: int
    """Labelled pairs judged."""
    agreement: float | None
    """The judge prefers the labelled better answer (ties and unparsed count as misses)."""
    ties: float | None
    """The judge called a tie."""
    agreement_non_ties: float | None
    """Agreement among the pairs where the judge gave a verdict other than a tie."""
    position_consistency: float | None
    """Pairwise judges: the verdict did not flip with the order; None for order-free judges."""
    unparsed: int
    """Pairs without a parsable verdict (pairwise judges reading text)."""
    length_baseline: float | None
    """"The longer answer wins" on the same pairs (equal lengths count as misses)."""
    balanced_n: int
    """Pairs in the length-balanced subset."""
    balanced_agreement: float | None
    """The judge's agreement on the length-balanced subset."""
    balanced_length_baseline: float | None
    """The length rule on the length-balanced subset."""
    vs_length: dict[str, Any]
    """The judge's agreement minus the length rule's on the same pairs, in points, with its
    paired bootstrap 95% interval over pairs (`ci95`) and whether it excludes 0: at 20 pairs a
    lead of 10 points is two pairs, and only an interval says whether the judge beats length."""
    seconds_per_pair: float
    """Wall time of the judge per pair. A pointwise judge with a score store (the
    evaluation's) reads the scores it has seen instead of running the model, so there it is
    no judge timing: `recast judge measure` keeps no store and times the judge itself."""


def measure(judge: Judge, pairs: Sequence[PreferencePair]) -> Measurement:
    """Judge each pair's better answer ("ours") against its worse one; a win is agreement."""
    if not pairs:
        raise RecastError("no labelled pairs to measure the judge on")
    start = time.perf_counter()
    judged = judge.judge(
        [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs]
    )
    elapsed = time.perf_counter() - start
    agree: list[bool | None] = [None if o is None else o == "win" for o in judged.outcomes]
    non_ties = [o for o in judged.outcomes if o in ("win", "loss")]
    rule = [longer_wins(p.chosen, p.rejected) for p in pairs]
    balanced = [i for i, p in enumerate(pairs) if is_balanced(p.chosen, p.rejected)]
    n = len(pairs)
    return Measurement(
        n=n,
        agreement=_share(agree),
        ties=sum(o == "tie" for o in judged.outcomes) / n,
        agreement_non_ties=(
            sum(o == "win" for o in non_ties) / len(non_ties) if non_ties else None
        ),
        position_consistency=judged.position_consistency(),
        unparsed=judged.unparsed,
        length_baseline=_share(rule),
        balanced_n=len(balanced),
        balanced_agreement=_share([agree[i] for i in balanced]),
        balanced_length_baseline=_share([rule[i] for i in balanced]),
        vs_length=mean_difference([bool(a) - bool(r) for a, r in zip(agree, rule, strict=True)]),
        seconds_per_pair=elapsed / n,
    )


def as_dict(m: Measurement) -> dict[str, Any]:
    """The measurement under the keys `recast judge measure --json` writes."""
    return asdict(m)
