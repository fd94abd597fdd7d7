"""The refiner as `recast serve` runs it: the chat template's head, which every P(x) shares, is
run through the model once, and each batch starts from a copy of its key/value cache.

chat(P(x)) is the chat template's system turn and Table 1's instruction, then x, then the
assistant turn's opening. With SmolLM2 and the bundled evaluation queries 54 of a prompt's ~72
tokens are that shared head. On a CPU the prefill is compute-bound, so a batch of 16 spent most
of its prefill on 16 copies of the same 54 tokens; here it runs 16 tails of ~18 tokens after one
cached head.

A batch is laid out as [head][left padding][tail]: the padding is masked and the position ids
skip it (`_positions`), so each row reads the sequence `Refiner.encode_prefix` gives it, and the
x' decoded from it are the same (tests/test_serve_prefix.py).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from recast.refiner.model import Prefix, Refiner, _positions
from recast.refiner.prompts import p_x

# two queries that share no first character: the head is what their prompts have in common
_PROBES = ("Explain why the sky is blue.", "1 + 1 = ?")


class SharedHeadRefiner(Refiner):
    """Refiner whose `encode_prefix` reuses the cached head of chat(P(x)). A prompt that does not
    start with that head (another template: P_xy) is encoded whole, as Refiner does it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        probes = [self.prefix_ids(p_x(q)) for q in _PROBES]
        same = 0
        while same < min(map(len, probes)) and probes[0][same] == probes[1][same]:
            same += 1
        self.head: list[int] = probes[0][:same]
        """The token ids every chat(P(x)) starts with."""
        self._head_cache: Any = None

    def _cached_head(self) -> Any:
        if self._head_cache is None:
            ids = torch.tensor([self.head], device=self.device)
            with torch.inference_mode():
                out = self.model.get_decoder()(input_ids=ids, use_cache=True)
            self._head_cache = out.past_key_values
        return self._head_cache

    def encode_prefix(self, prompts: list[str], queries: list[str] | None = None) -> Prefix:
        seqs = [self.prefix_ids(p) for p in prompts]
        h = len(self.head)
        if not h or any(len(s) <= h or s[:h] != self.head for s in seqs):
            return super().encode_prefix(prompts, queries)
        tails = [s[h:] for s in seqs]
        width = max(len(t) for t in tails)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(tails), width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(tails), h + width), dtype=torch.long, device=self.device)
        mask[:, :h] = 1
        for row, tail in enumerate(tails):  # every row's tail ends at the same column
            ids[row, width - len(tail) :] = torch.tensor(tail, device=self.device)
            mask[row, h + width - len(tail) :] = 1
        cache = copy.deepcopy(self._cached_head())  # decoding extends and prunes its copy
        cache.batch_repeat_interleave(len(tails))
        out = self.model.get_decoder()(
            input_ids=ids,
            attention_mask=mask,
            position_ids=_positions(mask)[:, h:],
            past_key_values=cache,
            use_cache=True,
        )
        budget = None
        if queries is not None and self.decoding.length_factor is not None:
            budget = torch.tensor(self.budget(queries, 1 << 30), device=self.device)
        return Prefix(out.past_key_values, mask, mask.sum(1), budget)
