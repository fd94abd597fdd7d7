"""The one refine path: decode x' = p_im(x), check it, and guard the generator against it.

    x' = p_im(x)          decoded greedily after chat(P_x(x)) [Z_s] z [Z_e] (Eq. 5), with the
                          unbiased refiner's own [Z_s], [Z_e] embeddings e^b (no CMA-ES bias), or
                          with given embeddings such as Eq. 9's e at ξ* for the pseudo-labels x*
    check(x, x')          recast.refiner.check: rewrite, copy, answers, drift or degenerate
    redraw                with redraw.n > 0 and the guard: for an x' that is not a rewrite,
                          sampled x' until the check calls one a rewrite (at most redraw.n)
    sent = x if the guard falls back (x' harmful or empty) else x'

"The unbiased refiner" is p_im with e^b on [Z_s], [Z_e]; it is not the search's ξ = 0, which
is e^b + B(0) with B(0) = -α σ(0) ∇e^b ≠ 0 (Eq. 13). `recast refine`, the evaluation's "ours"
and the ablations, the pseudo-labels of training and `recast serve` all call `refine`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from recast.refiner.check import (
    DEFAULT,
    Check,
    CheckParams,
    Encoder,
    Verdict,
    check_many,
    encoder,
    extract_query,
)
from recast.refiner.config import RedrawParams
from recast.refiner.model import Refiner
from recast.refiner.prompts import p_x

DEFAULT_ENCODER = "minilm-l6"


@dataclass(frozen=True)
class Refined:
    """One query through the refine path."""

    x: str
    """The user's query."""
    x_prime: str
    """The query p_im wrote: the decoded text, or with the guard on, the quoted query inside a
    preamble ("Sure, here's a modified query: "..."" -> the quoted part)."""
    verdict: Verdict
    """The rewrite check's verdict on x'."""
    reason: str
    """Why (one line)."""
    fallback: bool
    """The generator is sent x instead of x' (the guard rejected x', or x' is empty)."""

    @property
    def sent(self) -> str:
        """What the generator is asked."""
        return self.x if self.fallback else self.x_prime


@dataclass
class Guard:
    """The check where x' meets the generator: in the CMA-ES fitness (Eq. 11), the choice of
    the pseudo-labels x* (Eq. 11) and at inference. `enabled` False is the paper: x' goes to
    the generator whatever it is, and the verdicts are only counted."""

    enabled: bool = True
    """Replace a harmful x' (answers, drift, degenerate) by x."""
    encoder: Encoder | None = None
    """MiniLM for the check's cosine (None: the lexical check alone)."""
    params: CheckParams = DEFAULT
    counts: Counter[str] = field(default_factory=Counter)
    """Verdicts seen so far, over every x' checked (for the search's and training's metrics)."""

    @classmethod
    def from_params(cls, rp: Any) -> Guard:
        """From RefinerParams: `guard` and `check_encoder`."""
        return cls(
            enabled=rp.guard, encoder=encoder(rp.check_encoder) if rp.check_encoder else None
        )

    def key(self) -> str:
        """What a checkpoint of a guarded search must match."""
        return f"guard={self.enabled} encoder={self.encoder is not None} {self.params}"

    def apply(self, xs: list[str], x_primes: list[str]) -> tuple[list[str], list[Check]]:
        """(what the generator is sent, the checks): x for a harmful or empty x' when enabled,
        else x' (unwrapped from a preamble when enabled)."""
        checks = check_many(xs, x_primes, self.params, self.encoder)
        self.counts.update(c.verdict for c in checks)
        if not self.enabled:
            return list(x_primes), checks
        sent = [
            x if c.harmful or not xp.strip() else extract_query(xp)
            for x, xp, c in zip(xs, x_primes, checks, strict=True)
        ]
        return sent, checks

    def flagged(self) -> dict[str, int]:
        """Counts per verdict, every verdict present (zeros included), plus the total checked."""
        out = {f"check_{v}": int(self.counts.get(v, 0)) for v in _VERDICTS}
        out["check_total"] = int(sum(self.counts.values()))
        return out


_VERDICTS: tuple[str, ...] = get_args(Verdict)  # every verdict, in the check's order


def decode(
    refiner: Refiner,
    xs: list[str],
    max_new_tokens: int,
    *,
    embeddings: Any = None,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """x' = p_im(x) for every x, in batches, under the refiner's decoding rule (its length cap
    needs each x): greedy at temperature 0, else sampled from a generator seeded by `seed`;
    `embeddings` (2, d) are the [Z_s], [Z_e] embeddings to decode with (None: the unbiased
    refiner's e^b). With refiner.keep_input p_im reads x's instruction and x' gets x's input
    verbatim (recast.refiner.query)."""
    import torch

    rng = torch.Generator(device=refiner.device).manual_seed(seed) if temperature > 0 else None

    out: list[str] = []
    with torch.inference_mode():
        e = refiner.base_embeddings() if embeddings is None else embeddings
        for start in range(0, len(xs), batch_size):
            part = xs[start : start + batch_size]
            read = [refiner.reads(x) for x in part]
            prefix = refiner.encode_prefix([p_x(r) for r in read], queries=read)
            decoded = refiner.decode(prefix, e, max_new_tokens, temperature, top_p, rng)
            out += [refiner.completes(x, d) for x, d in zip(part, decoded, strict=True)]
            if on_batch is not None:
                on_batch(len(part))
    return out


def refine(
    refiner: Refiner,
    xs: list[str],
    max_new_tokens: int,
    *,
    guard: bool = True,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
    embeddings: Any = None,
    check_encoder: str | None = DEFAULT_ENCODER,
    redraw: RedrawParams | None = None,
) -> list[Refined]:
    """Decode x' = p_im(x) with the unbiased refiner (or `embeddings`), check each x' against
    its x, and with `guard` fall back to x where x' is harmful; an empty x' falls back always
    (it would send the generator nothing). `on_batch(n)` is called after each batch of n
    queries; `check_encoder` is the sentence encoder of the check (None: lexical only).

    With `guard` and a `redraw` with n > 0, every x whose x' is not a rewrite gets sampled x' until
    the check calls one a rewrite, at most redraw.n; a 135M p_im copies x or drifts on most
    queries greedily, and a sample is often a rewrite where the greedy x' is not. The check
    that picks a redraw is the one that guards: a redraw it misjudges is sent like a
    misjudged greedy x' would be (its error rates on labelled rows: docs/method.md)."""
    decoded = decode(
        refiner, xs, max_new_tokens, embeddings=embeddings, batch_size=batch_size, on_batch=on_batch
    )
    g = Guard(enabled=guard, encoder=encoder(check_encoder) if check_encoder else None)
    _, checks = g.apply(xs, decoded)
    redraws = redraw.n if redraw is not None and guard else 0
    todo = [i for i, c in enumerate(checks) if c.verdict != "rewrite"] if redraws else []
    for k in range(1, redraws + 1):
        if not todo:
            break
        drawn = decode(
            refiner, [xs[i] for i in todo], max_new_tokens, embeddings=embeddings,
            batch_size=batch_size, temperature=redraw.temperature, top_p=redraw.top_p,
            seed=redraw.seed + k,
        )  # fmt: skip
        _, drawn_checks = g.apply([xs[i] for i in todo], drawn)
        for i, x_prime, c in zip(todo, drawn, drawn_checks, strict=True):
            if c.verdict == "rewrite":
                decoded[i], checks[i] = x_prime, c
        todo = [i for i in todo if checks[i].verdict != "rewrite"]
    return [
        Refined(
            x=x,
            x_prime=extract_query(raw) if guard else raw.strip(),
            verdict=c.verdict,
            reason=c.reason,
            fallback=(guard and c.harmful) or not raw.strip(),
        )
        for x, raw, c in zip(xs, decoded, checks, strict=True)
    ]
