"""p_im and q_im (Eq. 5-7): a causal LM with a continuous thought between [Z_s] and [Z_e].

The sequence the refiner reads is

    chat(P(x)) [Z_s] z [Z_e] x'

where the chat template's user turn holds the Table 1 prompt, [Z_s] and [Z_e] are two special
tokens whose input embeddings e_0, e_1 may carry the CMA-ES bias (Eq. 9), and z is not a token:
it is the last hidden state at [Z_s], fed back as the next input embedding (Eq. 5, as in Hao et
al.'s continuous thought). x' is decoded after [Z_e].

Everything before [Z_s] is independent of ξ, so its key/value cache is computed once per query
and shared by every CMA-ES candidate: that is what makes population evaluation cheap.

How x' is decoded is the refiner's `decoding` rule (`Decoding`): the paper's (until EOS or
n_g tokens), or one that stops at the end of the query (refiner.decoding = query; see
docs/method.md, "Decoding x' to the end of the query").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from recast.errors import RecastError
from recast.generator.local import chat_ids
from recast.models.load import load_causal_lm
from recast.refiner import query
from recast.refiner.prompts import Z_E, Z_S


@dataclass(frozen=True)
class Decoding:
    """How x' is decoded after [Z_e]. The default is the paper's: until EOS or n_g tokens
    (Table 5). A small refiner decoded that way runs on past the query into an answer, a second
    query or a loop (issue 12: 14 of 40 untrained SmolLM2 x' loop); `QUERY` stops it where a
    query ends."""

    stop: bool = False
    """Stop at the end of the assistant turn (the chat template's end-of-turn token, besides
    EOS) or at the first blank line after some text: a query is one paragraph, what follows a
    blank line is the answer or a second query."""
    length_factor: float | None = None
    """Cap x' at max(min_tokens, length_factor·|x|) tokens (|x| in the refiner's tokens), never
    above n_g; None: n_g alone. A rewrite adds details, not pages."""
    min_tokens: int = 16
    """The cap's floor, so that a two-word query may still gain a clause."""
    no_repeat_ngram: int = 0
    """Never emit a token that repeats a token n-gram of x' (0: off), against loops."""

    @classmethod
    def from_params(cls, rp: Any) -> Decoding:
        """From RefinerParams: `decoding` ('paper' | 'query') and the `decode_*` keys."""
        if rp.decoding == "paper":
            return PAPER
        return cls(
            stop=True,
            length_factor=rp.decode_length_factor,
            min_tokens=rp.decode_min_tokens,
            no_repeat_ngram=rp.decode_no_repeat_ngram,
        )


PAPER = Decoding()
QUERY = Decoding(stop=True, length_factor=3.0, min_tokens=16, no_repeat_ngram=4)
# the chat templates' end-of-turn markers (SmolLM2 and Qwen: <|im_end|>, Llama 3, Gemma)
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


@dataclass
class Prefix:
    """The ξ-independent part of a batch: chat(P(x)) left-padded, and its key/value cache."""

    cache: Any
    """transformers Cache over the prefix tokens."""
    mask: torch.Tensor
    """(B, P) attention mask of the prefix (0 on left padding)."""
    lengths: torch.Tensor
    """(B,) real prefix lengths: the position id of [Z_s]."""
    budget: torch.Tensor | None = None
    """(B,) most x' tokens per row under the decoding rule's length cap (None: no cap)."""

    def repeat(self, n: int) -> Prefix:
        """Each row repeated n times (row-major: r0 r0 … r1 r1 …), on a copy of the cache."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(n)
        budget = None if self.budget is None else self.budget.repeat_interleave(n)
        return Prefix(
            cache, self.mask.repeat_interleave(n, 0), self.lengths.repeat_interleave(n), budget
        )


class Refiner:
    """p_im: the refiner LM with [Z_s], [Z_e] in its vocabulary."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_prompt_tokens: int = 1024,
        decoding: Decoding = PAPER,
        keep_input: bool = False,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.decoding = decoding
        """How x' is decoded (`Decoding`); every caller of `decode` gets this rule."""
        self.keep_input = keep_input
        """p_im reads x's instruction alone and x' gets x's input verbatim (refiner.keep_input,
        recast.refiner.query); False: p_im reads all of x (the paper)."""
        self.source: str | None = None
        """Where these exact weights can be loaded from (None: changed since, not saved)."""
        add_latent_tokens(model, tokenizer)
        self.zs_id = tokenizer.convert_tokens_to_ids(Z_S)
        self.ze_id = tokenizer.convert_tokens_to_ids(Z_E)
        self.stop_ids = sorted(
            {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        )
        vocab = tokenizer.get_vocab()
        self.turn_ids = sorted({vocab[t] for t in END_OF_TURN if t in vocab} | set(self.stop_ids))
        """EOS, pad and the end-of-turn tokens: where `Decoding.stop` ends x'."""

    @classmethod
    def load(
        cls,
        spec: str,
        dtype: str = "float32",
        device: str = "auto",
        decoding: Decoding = PAPER,
        keep_input: bool = False,
    ) -> Refiner:
        model, tokenizer = load_causal_lm(spec, dtype, device)
        refiner = cls(model, tokenizer, decoding=decoding, keep_input=keep_input)
        refiner.source = spec
        return refiner

    @classmethod
    def from_params(cls, spec: str, rp: Any) -> Refiner:
        """The refiner at `spec` with RefinerParams' dtype, device and decoding rule: how every
        stage loads p_im, so that x' is decoded the same way in search, training and use."""
        return cls.load(spec, rp.dtype, rp.device, Decoding.from_params(rp), rp.keep_input)

    # -- what p_im reads and writes of x (recast.refiner.query) ---------------------------------

    def reads(self, x: str) -> str:
        """The part of x that p_im reads in P_x(x) and rewrites: its instruction with
        keep_input, else x."""
        return query.instruction(x) if self.keep_input else x

    def completes(self, x: str, decoded: str) -> str:
        """x' from what p_im decoded for `reads(x)`: with keep_input, x's input appended."""
        return query.join(x, decoded) if self.keep_input else decoded

    def writes(self, x: str, x_prime: str) -> str:
        """The part of an x' (a pseudo-label x*, a teacher's rewrite) that p_im is trained to
        decode after P_x(x): x' without x's input with keep_input, else x' whole."""
        return query.rewritten_part(x, x_prime) if self.keep_input else x_prime

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def embedding(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    def base_embeddings(self) -> torch.Tensor:
        """(2, d): e_0^b = E_b([Z_s]) and e_1^b = E_b([Z_e]) of Eq. 9."""
        return self.embedding.weight[[self.zs_id, self.ze_id]]

    # -- the prefix ---------------------------------------------------------------------------

    def prefix_ids(self, prompt: str) -> list[int]:
        """chat(P(x)) with the assistant turn opened; [Z_s] comes next."""
        ids = chat_ids(self.tokenizer, prompt)
        if len(ids) > self.max_prompt_tokens:
            raise RecastError(
                f"refiner prompt is {len(ids)} tokens, over the limit of {self.max_prompt_tokens}"
                " (refiner.max_prompt_tokens): shorten the query or raise the limit"
            )
        return ids

    def budget(self, queries: list[str], max_new_tokens: int) -> list[int]:
        """Most x' tokens per query: max(min_tokens, ⌈length_factor·|x|⌉), at most n_g."""
        rule = self.decoding
        if rule.length_factor is None:
            return [max_new_tokens] * len(queries)
        sizes = [len(self.tokenizer(q, add_special_tokens=False)["input_ids"]) for q in queries]
        return [
            min(max_new_tokens, max(rule.min_tokens, math.ceil(rule.length_factor * n)))
            for n in sizes
        ]

    def encode_prefix(self, prompts: list[str], queries: list[str] | None = None) -> Prefix:
        """Run the ξ-independent prefix once; with gradients only if the caller enables them.
        `queries` are the x inside the prompts, for the decoding rule's length cap."""
        seqs = [self.prefix_ids(p) for p in prompts]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(seqs), width), dtype=torch.long, device=self.device)
        for row, seq in enumerate(seqs):  # left padding: every row ends at the same column
            ids[row, width - len(seq) :] = torch.tensor(seq, device=self.device)
            mask[row, width - len(seq) :] = 1
        lengths = mask.sum(1)
        out = self.model.get_decoder()(
            input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True
        )
        budget = None
        if queries is not None and self.decoding.length_factor is not None:
            # n_g itself is applied in `decode`; here only the per-query cap
            budget = torch.tensor(self.budget(queries, 1 << 30), device=self.device)
        return Prefix(out.past_key_values, mask, lengths, budget)

    # -- the latent step: [Z_s] z [Z_e] -------------------------------------------------------

    def _step(self, prefix: Prefix, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[Any, Any]:
        """Feed `embeds` (B, T, d) after what `prefix.cache` holds; returns (hidden, mask)."""
        mask = torch.cat(
            [mask, torch.ones(embeds.shape[:2], dtype=mask.dtype, device=mask.device)], 1
        )
        positions = _positions(mask)[:, -embeds.shape[1] :]
        out = self.model.get_decoder()(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=prefix.cache,
            use_cache=True,
        )
        return out.last_hidden_state, mask

    def latent(self, prefix: Prefix, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5: z = H(E(P(x)) ⊕ e_0), then [z, e_1] is fed; returns (hidden at [Z_e], mask).

        `e` is (2, d) or (B, 2, d): the (possibly ξ-biased) embeddings of [Z_s] and [Z_e]. The
        cache in `prefix` is extended in place.
        """
        batch = prefix.mask.shape[0]
        e = e.expand(batch, 2, e.shape[-1]) if e.dim() == 2 else e
        e = e.to(self.embedding.weight.dtype)
        hidden, mask = self._step(prefix, e[:, :1], prefix.mask)
        z = hidden[:, -1:]  # the continuous thought: a hidden state, not a token
        hidden, mask = self._step(prefix, torch.cat([z, e[:, 1:]], 1), mask)
        return hidden[:, -1], mask

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden).float()
        # x' never contains the markers; a finite floor keeps KL(p‖q) free of 0·(-inf - -inf)
        logits[..., [self.zs_id, self.ze_id]] = -1e30
        return logits

    # -- decoding x' ---------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(
        self,
        prefix: Prefix,
        e: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """x' for every row, after the latent step with embeddings `e` (2, d) or (B, 2, d),
        under the refiner's `decoding` rule (the prefix's `budget` is its length cap).

        Rows that have ended leave the batch (their cache rows are dropped): decoding on a
        CPU is compute-bound, so finished rows would cost as much as live ones. The prefix's
        cache is consumed."""
        rule = self.decoding
        hidden, mask = self.latent(prefix, e)
        stops = torch.tensor(self.turn_ids if rule.stop else self.stop_ids, device=self.device)
        rows = hidden.shape[0]
        caps = [max_new_tokens] * rows
        if prefix.budget is not None:
            caps = [min(max_new_tokens, int(b)) for b in prefix.budget.tolist()]
        active = torch.arange(rows, device=self.device)  # batch row -> output row
        ids: list[list[int]] = [[] for _ in range(rows)]
        for _ in range(max_new_tokens):
            logits = self._logits(hidden)
            if rule.no_repeat_ngram > 0:
                for k, row in enumerate(active.tolist()):
                    banned = _repeats(ids[row], rule.no_repeat_ngram)
                    if banned:
                        logits[k, banned] = -1e30
            nxt = _pick(logits, temperature, top_p, generator)
            finished = torch.isin(nxt, stops).tolist()
            for k, (row, token) in enumerate(zip(active.tolist(), nxt.tolist(), strict=True)):
                if finished[k]:
                    continue
                ids[row].append(token)
                if len(ids[row]) >= caps[row] or (rule.stop and self._paragraph_done(ids[row])):
                    finished[k] = True
            done = torch.tensor(finished, device=self.device)
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero()[:, 0]
                prefix.cache.batch_select_indices(keep)
                active, mask, nxt = active[keep], mask[keep], nxt[keep]
            out, mask = self._step(prefix, self.embedding(nxt)[:, None], mask)
            hidden = out[:, -1]
        texts = [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
        if rule.stop:  # the first paragraph: what follows a blank line is not the query
            texts = [query.BLANK_LINE.split(t, maxsplit=1)[0].strip() for t in texts]
        return texts

    def _paragraph_done(self, row: list[int]) -> bool:
        """x' so far holds text followed by a blank line (checked on the last tokens first:
        a full decode per step would cost more than the check saves)."""
        if not query.BLANK_LINE.search(self.tokenizer.decode(row[-3:])):
            return False
        return bool(query.BLANK_LINE.search(self.tokenizer.decode(row).lstrip()))

    # -- teacher forcing (training, and ∇e^b of Eq. 13) -----------------------------------------

    def target_logits(
        self, prompts: list[str], targets: list[list[int]], e: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits predicting each target token after chat(P) [Z_s] z [Z_e] (teacher forcing).

        Returns (logits (B, T, V), valid (B, T) bool) with T the longest target; gradients flow
        to the model and to `e`.
        """
        prefix = self.encode_prefix(prompts)
        hidden, mask = self.latent(prefix, e)
        width = max(len(t) for t in targets)
        ids = torch.full(
            (len(targets), width), self.stop_ids[0], dtype=torch.long, device=self.device
        )
        valid = torch.zeros((len(targets), width), dtype=torch.bool, device=self.device)
        for row, t in enumerate(targets):
            ids[row, : len(t)] = torch.tensor(t, device=self.device)
            valid[row, : len(t)] = True
        first = hidden[:, None]  # the hidden state at [Z_e] predicts target token 0
        if width > 1:
            rest, _ = self._step(prefix, self.embedding(ids[:, :-1]), mask)
            first = torch.cat([first, rest], 1)
        return self._logits(first), valid

    def target_ids(self, text: str, max_tokens: int) -> list[int]:
        """Token ids of a target text (x* or y), cut to max_tokens, ending with EOS if it fits."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
        if len(ids) < max_tokens:
            ids = [*ids, self.stop_ids[0]]
        return ids


def add_latent_tokens(model: Any, tokenizer: Any) -> None:
    """Add [Z_s], [Z_e] as special tokens (once); their embeddings start at the mean one."""
    missing = [t for t in (Z_S, Z_E) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    old = model.get_input_embeddings().weight.shape[0]
    if old < len(tokenizer):
        # Deterministic start: the mean embedding (transformers' default samples randomly).
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            weight = model.get_input_embeddings().weight
            weight[old:] = weight[:old].mean(0)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def cross_entropy(
    logits: torch.Tensor, targets: list[list[int]], valid: torch.Tensor
) -> torch.Tensor:
    """Mean token CE of the targets under teacher-forced logits (one scalar over the batch)."""
    ids = torch.zeros(valid.shape, dtype=torch.long, device=logits.device)
    for row, t in enumerate(targets):
        ids[row, : len(t)] = torch.tensor(t, device=logits.device)
    nll = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    return (nll * valid).sum() / valid.sum()


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _repeats(row: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already in `row` (the no-repeat-n-gram ban)."""
    if len(row) < n:
        return []
    head = tuple(row[len(row) - n + 1 :])
    return sorted(
        {row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i : i + n - 1]) == head}
    )


def _pick(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
