"""Cleaning users expect, each drop counted by reason: empty text, chosen == rejected,
language, token-length limits, duplicate prompts."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from recast.data.config import PairsParams
from recast.records import PreferencePair, Turn

_SPACE = re.compile(r"\s+")
# A prompt this many characters per allowed token is surely too long: skip tokenizing it.
_CHARS_PER_TOKEN_CAP = 16


def normalize(text: str) -> str:
    """The dedup key: NFKC, case-folded, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).casefold().strip()


def detect_language(text: str) -> str:
    """ISO 639-1 code by langid (deterministic, offline, bundled model)."""
    import langid  # lazy: loads its model on first use (~1 s)

    return langid.classify(text[:2000])[0]


def clean_pairs(
    pairs: Iterable[PreferencePair],
    params: PairsParams,
    count_tokens: Callable[[list[str]], list[int]],
    drops: Counter[str],
) -> list[PreferencePair]:
    """Filter pairs in a fixed order; `drops` is incremented per reason."""
    kept: list[PreferencePair] = []
    seen: set[str] = set()
    for pair in pairs:
        reason = _content_reason(pair, params)
        if reason is None:
            pair = _with_language(pair)
            if pair.lang not in params.languages:
                reason = "language"
        if reason is None:
            reason = _length_reason(pair, params, count_tokens)
        if reason is None:
            key = normalize(pair.prompt)
            if key in seen:
                reason = "duplicate_prompt"
            seen.add(key)
        if reason is None:
            kept.append(_trim_context(pair, params.max_context_turns))
        else:
            drops[reason] += 1
    return kept


def _content_reason(pair: PreferencePair, params: PairsParams) -> str | None:
    if not pair.prompt.strip():
        return "empty_prompt"
    if not pair.chosen.strip() or not pair.rejected.strip():
        return "empty_response"
    if normalize(pair.chosen) == normalize(pair.rejected):
        return "chosen_equals_rejected"
    return None


def _with_language(pair: PreferencePair) -> PreferencePair:
    if pair.lang:
        return pair
    lang = detect_language(f"{pair.prompt}\n{pair.chosen}")
    return PreferencePair(
        pair.source, pair.prompt, pair.chosen, pair.rejected, pair.context, lang, pair.meta
    )


def _length_reason(
    pair: PreferencePair, params: PairsParams, count_tokens: Callable[[list[str]], list[int]]
) -> str | None:
    if len(pair.prompt) > params.max_prompt_tokens * _CHARS_PER_TOKEN_CAP:
        return "prompt_too_long"
    longest = max(len(pair.chosen), len(pair.rejected))
    if longest > params.max_response_tokens * _CHARS_PER_TOKEN_CAP:
        return "response_too_long"
    n_prompt, n_chosen, n_rejected = count_tokens([pair.prompt, pair.chosen, pair.rejected])
    if n_prompt < params.min_prompt_tokens:
        return "prompt_too_short"
    if n_prompt > params.max_prompt_tokens:
        return "prompt_too_long"
    if max(n_chosen, n_rejected) > params.max_response_tokens:
        return "response_too_long"
    return None


def _trim_context(pair: PreferencePair, max_turns: int) -> PreferencePair:
    if len(pair.context) <= max_turns:
        return pair
    context: tuple[Turn, ...] = pair.context[-max_turns:] if max_turns else ()
    meta: dict[str, Any] = {**pair.meta, "context_trimmed_from": len(pair.context)}
    return PreferencePair(
        pair.source, pair.prompt, pair.chosen, pair.rejected, context, pair.lang, meta
    )
