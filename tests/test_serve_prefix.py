"""serve's refiner runs the shared head of chat(P(x)) once: the x' it decodes must be the plain
refiner's, on real queries, in batches of mixed lengths."""

from __future__ import annotations

import json

import torch
from conftest import SAMPLES

from recast.models.load import load_causal_lm
from recast.refiner.model import QUERY, Refiner
from recast.refiner.prompts import p_x, p_xy
from recast.refiner.refine import decode
from recast.serve.shared_head import SharedHeadRefiner

BPO = [r["prompt"] for r in json.loads((SAMPLES / "eval-samples" / "bpo_test.json").read_text())]


def pair(tiny_lm: str) -> tuple[Refiner, SharedHeadRefiner]:
    model, tokenizer = load_causal_lm(tiny_lm, "float32", "cpu")
    return Refiner(model, tokenizer, decoding=QUERY), SharedHeadRefiner(
        model, tokenizer, decoding=QUERY
    )


def test_the_head_is_the_template_every_query_shares(tiny_lm: str) -> None:
    plain, shared = pair(tiny_lm)
    xs = BPO[:6]
    seqs = [plain.prefix_ids(p_x(x)) for x in xs]
    h = len(shared.head)
    assert h > 20 and all(s[:h] == shared.head for s in seqs)
    assert all(len(s) > h for s in seqs)
    # the head stops before any query: the next token differs between some two queries
    assert len({s[h] for s in seqs}) > 1


def test_shared_head_decodes_the_plain_refiners_x_prime(tiny_lm: str) -> None:
    plain, shared = pair(tiny_lm)
    xs = BPO[:8]
    assert len({len(plain.prefix_ids(p_x(x))) for x in xs}) > 1  # the batch is padded
    e = plain.base_embeddings()
    got = decode(shared, xs, 24, embeddings=e, batch_size=8)
    want = decode(plain, xs, 24, embeddings=e, batch_size=8)
    assert got == want and any(got)
    # the hidden state at [Z_e], from which x' is decoded, is the same number up to rounding
    with torch.inference_mode():
        prompts = [p_x(x) for x in xs]
        a, _ = plain.latent(plain.encode_prefix(prompts, xs), e)
        b, _ = shared.latent(shared.encode_prefix(prompts, xs), e)
    assert torch.allclose(a, b, atol=1e-4)
    # the head's cache is copied, not consumed: a second batch decodes the same again
    assert decode(shared, xs, 24, embeddings=e, batch_size=8) == want


def test_another_template_is_encoded_whole(tiny_lm: str) -> None:
    """P_xy shares the system turn but not the instruction: reading it after the cached head
    would put the head's tokens in place of its own."""
    plain, shared = pair(tiny_lm)
    prompts = [p_xy(x, "A short answer.", "No.") for x in BPO[:2]]
    assert all(plain.prefix_ids(p)[: len(shared.head)] != shared.head for p in prompts)
    e = plain.base_embeddings()
    with torch.inference_mode():
        a, _ = plain.latent(plain.encode_prefix(prompts), e)
        b, _ = shared.latent(shared.encode_prefix(prompts), e)
    assert torch.allclose(a, b, atol=1e-5)
