"""The rewrite teacher: an LLM (bpo.teacher, the packaged Qwen2.5-Coder-1.5B) reads a preference
pair and rewrites its query x into x' so that an assistant would give the better answer, BPO's
way (Cheng et al. 2023). Its rewrites of the first bpo.train_size training queries are written
once (stage `rewrites`, committed to git) and shared by two consumers:

- BPO's optimizer (recast.evaluation.bpo) is fine-tuned on (x -> x');
- the refiner's warm start ρ_sft (recast.refiner.warmstart) is p_im fine-tuned on (x -> x').

Both keep only the rewrites that the rewrite check (recast.refiner.check) calls `rewrite` when
refiner.guard is on: a teacher that reads y+ may paste y+'s content into x' (an answer, not a
query), and a copy of x teaches nothing. With the guard off (the paper, and BPO as published),
every non-empty x' that differs from x is kept. The check runs where the rewrites are used, not
where they are written, so a change to the check never re-runs the slow teacher.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.data.fewshot import EXAMPLES
from recast.evaluation.config import BpoParams
from recast.records import PreferencePair
from recast.refiner import query

TEACHER = (
    "You rewrite a user's instruction so that an AI assistant answers it well. A rewrite asks "
    "for the same thing, keeps every detail of the instruction, and adds what a good response "
    "needs: details, constraints, format. It never answers the instruction.\n\n"
    "Examples:\n\n{examples}\n\n"
    "Here is a new instruction, a bad response and a good response to it.\n\n"
    "[Instruction]\n{prompt}\n\n{input}[Bad response]\n{bad}\n\n[Good response]\n{good}\n\n"
    "Compare the two responses and work out what the user really needs. Then rewrite the "
    "instruction so that an assistant would give the good response. Reply with the rewritten "
    "instruction only."
)
"""BPO's teacher prompt (the better and the worse answer show what x needs) with non-identity
few-shot examples (recast.data.fewshot) before the pair: placed after it, a 1.5B teacher copied
the last example instead of rewriting x."""
INPUT = "[Input, passed on unchanged after your rewrite]\n{input}\n\n"
"""x's input (recast.refiner.query), shown apart from its instruction: shown as one text, the
1.5B teacher dropped the input from 11 of the 12 rewrites of a query that had one (x' asked to
summarize no paragraph)."""
PREFILL = "Rewritten instruction:"
"""The teacher's reply is started for it: asked for a rewrite, a 1.5B teacher that reads y+
otherwise answers x (2 of 3 on the first training queries)."""
RESPONSE_WORDS = 60
"""Each response in the teacher's prompt is cut to this many words: what makes y+ better shows
in its opening, and a 1.5B teacher on a CPU pays for every prompt token."""
_SECTION = re.compile(
    r"^\s*\[(instruction|input[^\]\n]*|bad response|good response)\]\s*$", re.I | re.M
)
_LABEL = re.compile(r"^\s*(rewrite|rewritten instruction)\s*:\s*", re.I)


def examples() -> str:
    return "\n\n".join(f"Instruction: {x}\nRewrite: {xp}" for x, xp in EXAMPLES)


def _cut(text: str, n: int = RESPONSE_WORDS) -> str:
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n]) + " …"


def teacher_prompt(pair: PreferencePair) -> str:
    instruction, tail = query.split(pair.prompt)
    return TEACHER.format(
        prompt=instruction.strip(),
        input=INPUT.format(input=tail.strip()) if tail else "",
        bad=_cut(pair.rejected),
        good=_cut(pair.chosen),
        examples=examples(),
    )


def teacher_queries(pairs: list[PreferencePair], n: int | None) -> list[PreferencePair]:
    """The first n pairs of D whose query stands on its own (no earlier turns): a follow-up
    ("Yes, how do I do that?") cannot be rewritten without its conversation, which neither the
    teacher's prompt nor P_x shows, and the teacher answered 12 of the 26 in the first 64 with a
    few-shot example pasted whole."""
    alone = [p for p in pairs if not p.context]
    return alone[:n] if n else alone


def extract_rewrite(reply: str) -> str:
    """The rewritten instruction in a teacher's reply. A small teacher often wraps it in a
    preamble ("Here is the rewritten instruction:"), repeats the prompt's [Instruction] header
    or the examples' "Rewrite:" label, and runs on into a [Good response] section; the student
    must learn the instruction alone."""
    sections = list(_SECTION.finditer(reply))
    heads = [m for m in sections if m.group(1).lower() == "instruction"]
    if heads:  # the text under the last [Instruction] header, up to the next header
        start = heads[-1].end()
        after = [m.start() for m in sections if m.start() >= start]
        reply = reply[start : after[0] if after else len(reply)]
    elif sections:  # no [Instruction] header: what comes before the first response section
        reply = reply[: sections[0].start()]
    reply = _LABEL.sub("", reply.strip()).strip()
    if len(reply) > 1 and reply[0] == reply[-1] == '"':  # quoted as a whole
        reply = reply[1:-1].strip()
    return reply


def teacher_x_prime(x: str, reply: str) -> str:
    """x' from a teacher's reply: its rewritten instruction (the first paragraph), with x's
    input appended verbatim (recast.refiner.query.join), as p_im's x' is built."""
    rewritten = query.instruction(extract_rewrite(reply)).strip()
    return query.join(x, rewritten)


@dataclass(frozen=True)
class Rewrite:
    """One teacher rewrite as stored: x, the teacher's x' and its raw reply."""

    id: str
    x: str
    x_prime: str
    raw: str


def key(bp: BpoParams, pairs: list[PreferencePair]) -> str:
    """What the stored rewrites depend on: the teacher, its prompt and the queries."""
    return _key(bp, [p.id for p in pairs])


def _key(bp: BpoParams, ids: list[str]) -> str:
    parts = {
        "teacher": bp.teacher,
        "max_new_tokens": bp.max_new_tokens,
        "prompt": TEACHER,
        "input": INPUT,
        "x_prime": "instruction + input",
        "prefill": PREFILL,
        "examples": EXAMPLES,
        "response_words": RESPONSE_WORDS,
        "ids": ids,
    }
    return io.digest(parts)


def stored(bp: BpoParams, pairs: list[PreferencePair]) -> dict[str, Any] | None:
    """The content of bpo.rewrites when it holds exactly these pairs by this teacher, else None
    (missing or stale file)."""
    path = Path(bp.rewrites)
    if not path.exists():
        return None
    data = io.read_json(path)
    return data if data.get("key") == key(bp, pairs) else None


def reusable_rows(bp: BpoParams) -> dict[str, dict[str, str]]:
    """The rows of bpo.rewrites by id when the file was written by this teacher and prompt (its
    key is recomputed over its own rows' ids), else none: more queries (a larger
    bpo.train_size) then cost only the new ones, half an hour of CPU per 300 queries."""
    path = Path(bp.rewrites)
    if not path.exists():
        return {}
    data = io.read_json(path)
    rows = data.get("rows", [])
    return (
        {r["id"]: r for r in rows} if data.get("key") == _key(bp, [r["id"] for r in rows]) else {}
    )


def rewrite_file(params: Params, pairs: list[PreferencePair]) -> dict[str, Any]:
    """The content of bpo.rewrites for `pairs`: {key, teacher, teacher_seconds, reused_rows,
    rows}. A pair whose row the stale file already holds (same teacher, prompt and query) keeps
    it; the teacher (greedy) writes the others now. Only the `rewrites` stage writes the file
    (recast.stages.refiner), and only when `stored` finds it stale."""
    old = reusable_rows(params.bpo)
    reused = {p.id: old[p.id] for p in pairs if p.id in old}  # an id is the pair's content
    todo = [p for p in pairs if p.id not in reused]
    written, seconds = _written(params, todo) if todo else ([], 0.0)
    new = {row["id"]: row for row in written}
    return {
        "key": key(params.bpo, pairs),
        "teacher": params.bpo.teacher,
        "teacher_seconds": round(seconds, 1),
        "reused_rows": len(reused),
        "rows": [reused.get(p.id) or new[p.id] for p in pairs],
    }


def _written(params: Params, pairs: list[PreferencePair]) -> tuple[list[dict[str, str]], float]:
    """The teacher's rewrite of each pair (greedy), as rows, and the seconds it took."""
    from recast.generator import make_generator
    from recast.generator.base import Sampling

    bp = params.bpo
    teacher = make_generator(
        dataclasses.replace(
            params.generator,
            backend=bp.teacher_backend,
            model=bp.teacher,
            endpoints=list(bp.teacher_endpoints),
            dtype="auto",
        )
    )
    t0 = time.perf_counter()
    try:
        written = teacher.continue_answers(
            [teacher_prompt(p) for p in pairs],
            [PREFILL] * len(pairs),
            Sampling(max_new_tokens=bp.max_new_tokens, temperature=0.0),
        )
    finally:
        teacher.close()
    seconds = time.perf_counter() - t0
    rows = [
        dataclasses.asdict(Rewrite(p.id, p.prompt, teacher_x_prime(p.prompt, w), w))
        for p, w in zip(pairs, written, strict=True)
    ]
    return rows, seconds


def read_rewrites(bp: BpoParams, pairs: list[PreferencePair]) -> list[Rewrite] | None:
    """The stored rewrites of these pairs by this teacher, or None (missing or stale file)."""
    found = stored(bp, pairs)
    return None if found is None else [Rewrite(**row) for row in found["rows"]]


def rewrites(params: Params, pairs: list[PreferencePair]) -> list[Rewrite]:
    """The teacher's rewrites of `pairs`: from bpo.rewrites when it holds exactly these (the
    `rewrites` stage wrote it), else written now and not stored (the file is that stage's
    output, which no other stage may overwrite)."""
    found = read_rewrites(params.bpo, pairs)
    if found is not None:
        return found
    return [Rewrite(**row) for row in _written(params, pairs)[0]]


@dataclass
class Kept:
    """The rewrites a student may learn from, and what the check said of all of them."""

    pairs: list[Rewrite]
    verdicts: Counter[str]
    dropped: int

    def metrics(self, prefix: str = "teacher_") -> dict[str, int]:
        out = {f"{prefix}{v}": int(self.verdicts.get(v, 0)) for v in _VERDICTS}
        out[f"{prefix}kept"] = len(self.pairs)
        out[f"{prefix}dropped"] = self.dropped
        return out


_VERDICTS = ("rewrite", "copy", "answers", "drift", "degenerate")


def keep(rows: list[Rewrite], guard: bool, check_encoder: str | None) -> Kept:
    """With `guard`, the rewrites the check calls `rewrite` (not a copy, not harmful); without,
    BPO's published rule: every x' that is non-empty and not x itself."""
    from recast.refiner.check import check_many, encoder

    enc = encoder(check_encoder) if check_encoder else None
    checks = check_many([r.x for r in rows], [r.x_prime for r in rows], encoder=enc)
    verdicts = Counter(c.verdict for c in checks)
    if guard:
        kept = [r for r, c in zip(rows, checks, strict=True) if c.verdict == "rewrite"]
    else:
        kept = [r for r in rows if r.x_prime and r.x_prime != r.x]
    return Kept(kept, verdicts, len(rows) - len(kept))
