"""p_im and q_im (Eq. 5-7): a causal LM with a continuous thought between [Z_s] and [Z_e].

The sequence the refiner reads is

    chat(P(x)) [Z_s] z [Z_e] x'

where the chat template's user turn holds the Table 1 prompt, [Z_s] and [Z_e] are two special
tokens whose input embeddings e_0, e_1 may carry the CMA-ES bias (Eq. 9), and z is not a token:
it is the last hidden state at [Z_s], fed back as the next input embedding (Eq. 5, as in Hao et
al.'s continuous thought). x' is decoded after [Z_e].

Everything before [Z_s] is independent of ξ, so its key/value cache is computed once per query
and shared by every CMA-ES candidate: that is what makes population evaluation cheap.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from recast.errors import RecastError
from recast.generator.local import chat_ids
from recast.models.load import load_causal_lm
from recast.refiner.prompts import Z_E, Z_S


@dataclass
class Prefix:
    """The ξ-independent part of a batch: chat(P(x)) left-padded, and its key/value cache."""

    cache: Any
    """transformers Cache over the prefix tokens."""
    mask: torch.Tensor
    """(B, P) attention mask of the prefix (0 on left padding)."""
    lengths: torch.Tensor
    """(B,) real prefix lengths: the position id of [Z_s]."""

    def repeat(self, n: int) -> Prefix:
        """Each row repeated n times (row-major: r0 r0 … r1 r1 …), on a copy of the cache."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(n)
        return Prefix(cache, self.mask.repeat_interleave(n, 0), self.lengths.repeat_interleave(n))


class Refiner:
    """p_im: the refiner LM with [Z_s], [Z_e] in its vocabulary."""

    def __init__(self, model: Any, tokenizer: Any, max_prompt_tokens: int = 1024) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.source: str | None = None
        """Where these exact weights can be loaded from (None: changed since, not saved)."""
        add_latent_tokens(model, tokenizer)
        self.zs_id = tokenizer.convert_tokens_to_ids(Z_S)
        self.ze_id = tokenizer.convert_tokens_to_ids(Z_E)
        self.stop_ids = sorted(
            {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        )

    @classmethod
    def load(cls, spec: str, dtype: str = "float32", device: str = "auto") -> Refiner:
        model, tokenizer = load_causal_lm(spec, dtype, device)
        refiner = cls(model, tokenizer)
        refiner.source = spec
        return refiner

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

    def encode_prefix(self, prompts: list[str]) -> Prefix:
        """Run the ξ-independent prefix once; with gradients only if the caller enables them."""
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
        return Prefix(out.past_key_values, mask, lengths)

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
        """x' for every row, after the latent step with embeddings `e` (2, d) or (B, 2, d).

        Rows that have emitted EOS leave the batch (their cache rows are dropped): decoding on a
        CPU is compute-bound, so finished rows would cost as much as live ones. The prefix's
        cache is consumed."""
        hidden, mask = self.latent(prefix, e)
        stops = torch.tensor(self.stop_ids, device=self.device)
        active = torch.arange(hidden.shape[0], device=self.device)  # batch row -> output row
        ids: list[list[int]] = [[] for _ in range(hidden.shape[0])]
        for _ in range(max_new_tokens):
            nxt = _pick(self._logits(hidden), temperature, top_p, generator)
            finished = torch.isin(nxt, stops)
            for row, token, end in zip(
                active.tolist(), nxt.tolist(), finished.tolist(), strict=True
            ):
                if not end:
                    ids[row].append(token)
            if bool(finished.all()):
                break
            if bool(finished.any()):
                keep = (~finished).nonzero()[:, 0]
                prefix.cache.batch_select_indices(keep)
                active, mask, nxt = active[keep], mask[keep], nxt[keep]
            out, mask = self._step(prefix, self.embedding(nxt)[:, None], mask)
            hidden = out[:, -1]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]

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
