"""Each equation's piece of the refiner: special tokens, z as an embedding, B, Eq. 14, λ, KL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recast.refiner import bias
from recast.refiner.model import Refiner
from recast.refiner.prompts import Z_E, Z_S, p_x, p_xy, truth
from recast.training import kl_p_q, save_refiner

QUERIES = [  # real queries: the first prompts of the bundled BPO test slice and Vicuna eval
    "Complete the lyrics of the following song\nOh stars in the night,",
    "How can I improve my time management skills?",
    "What are the most effective ways to deal with stress?",
]


@pytest.fixture(scope="module")
def refiner(smollm2: str) -> Refiner:
    return Refiner.load(smollm2)


def test_special_tokens_round_trip(refiner: Refiner, tmp_path) -> None:
    tok = refiner.tokenizer
    for marker, tid in ((Z_S, refiner.zs_id), (Z_E, refiner.ze_id)):
        assert tok(marker, add_special_tokens=False)["input_ids"] == [tid]
        assert tok.decode([tid]) == marker
    text = f"before {Z_S} middle {Z_E} after"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert refiner.model.get_input_embeddings().weight.shape[0] == len(tok)
    save_refiner(refiner, tmp_path / "ckpt")
    again = Refiner.load(str(tmp_path / "ckpt"))
    assert (again.zs_id, again.ze_id) == (refiner.zs_id, refiner.ze_id)
    assert torch.equal(again.base_embeddings(), refiner.base_embeddings())


def test_new_token_embeddings_start_at_the_mean(refiner: Refiner) -> None:
    weight = refiner.embedding.weight
    mean = weight[: refiner.zs_id].mean(0)
    assert torch.allclose(refiner.base_embeddings(), mean.expand(2, -1), atol=1e-6)


def test_z_is_fed_back_as_an_embedding_not_a_token(refiner: Refiner) -> None:
    seen: list[torch.Tensor] = []
    decoder = refiner.model.get_decoder()

    def hook(_module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            seen.append(kwargs["inputs_embeds"].detach().clone())

    e = refiner.base_embeddings()
    with torch.inference_mode():
        # reference: z = H(E(P(x)) ⊕ e_0), each query alone, no cache, no padding
        expected = []
        for q in QUERIES[:2]:
            ids = torch.tensor([refiner.prefix_ids(p_x(q))])
            embeds = torch.cat([refiner.embedding(ids), e[None, :1]], 1)
            expected.append(decoder(inputs_embeds=embeds).last_hidden_state[0, -1])
        prefix = refiner.encode_prefix([p_x(q) for q in QUERIES[:2]])
        handle = decoder.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            refiner.latent(prefix, e)
        finally:
            handle.remove()
    first, second = seen  # [e_0], then [z, e_1]
    assert torch.equal(first[:, 0], e[0].expand(2, -1))
    z = second[:, 0]
    assert torch.allclose(z, torch.stack(expected), atol=1e-4)
    assert torch.equal(second[:, 1], e[1].expand(2, -1))
    # z is no token: it matches no row of the embedding matrix
    distances = torch.cdist(z.clone(), refiner.embedding.weight.detach())
    assert distances.min() > 1e-3


def test_batched_decoding_equals_one_at_a_time(refiner: Refiner) -> None:
    e = refiner.base_embeddings()
    with torch.inference_mode():
        batched = refiner.decode(refiner.encode_prefix([p_x(q) for q in QUERIES]), e, 16)
        prefix = refiner.encode_prefix([p_x(q) for q in QUERIES])
        repeated = refiner.decode(prefix.repeat(2), e, 16)
        single = [refiner.decode(refiner.encode_prefix([p_x(q)]), e, 16)[0] for q in QUERIES]
    assert batched == single
    assert repeated == [t for t in single for _ in range(2)]


def test_prompt_templates_follow_table_1() -> None:
    assert p_x("Q?").endswith("Please output the modified query only! Query:Q?")
    assert p_x("Q?").startswith("You are an expert prompt engineer.")
    assert "Form the judgment upon the following truth. Query:Q? Truth:" in p_xy("Q?", "a", "b")
    assert truth("a", "b") == (
        'The response of "a" is better than that of "b" to resolve the query.'
    )


def test_b_keeps_the_bias_on_the_gradient_direction_and_bounded() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        scale = 10.0 ** torch.randint(-4, 2, (1,), generator=gen).double()  # any magnitude
        grad = torch.randn(2, 64, generator=gen, dtype=torch.float64) * scale
        e_b = torch.randn(2, 64, generator=gen, dtype=torch.float64) * scale * 3  # g = O(1)
        alpha = torch.tensor([0.3, 2.0], dtype=torch.float64)
        b = bias.constrain(e_b, grad, alpha)
        cos = torch.nn.functional.cosine_similarity(b, grad, dim=-1)
        assert torch.allclose(cos, torch.full((2,), -1.0, dtype=torch.float64))
        assert (b.norm(dim=-1) <= alpha * grad.norm(dim=-1) * (1 + 1e-12)).all()  # σ ≤ 1
    # orthogonal to ∇: g = 0, σ(0) = 1/2 -> exactly half the bound
    grad = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    e_b = torch.tensor([[0.0, 7.0], [3.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(bias.constrain(e_b, grad, 1.0), -0.5 * grad)


def test_embeddings_of_a_population() -> None:
    e_base = torch.randn(2, 32, dtype=torch.float64)
    grads = torch.randn(2, 32, dtype=torch.float64)
    a = bias.projections(grads, d_z=4, seed=0)
    alpha = bias.alphas(e_base, grads, 1.0)
    pop = np.random.default_rng(0).standard_normal((5, 8))
    many = bias.embeddings(pop, e_base, a, grads, alpha)
    assert many.shape == (5, 2, 32)
    assert torch.allclose(many[3], bias.embeddings(pop[3], e_base, a, grads, alpha))
    # ξ = 0 is not "no bias": σ(0) = 1/2 of the bound along -∇ (Eq. 13)
    zero = bias.embeddings(np.zeros(8), e_base, a, grads, alpha)
    assert torch.allclose(zero, e_base - 0.5 * alpha[:, None] * grads)
    # the largest bias equals alpha · ‖e^b‖
    assert torch.allclose(alpha * grads.norm(dim=-1), e_base.norm(dim=-1))


def test_bias_tensors_follow_the_gradients_device() -> None:
    """A, α and ξ are made from numpy or Python floats; each must land on ∇'s device. On the
    meta device a CPU operand raises, as a CUDA one did in the first GPU check (A on the CPU)."""
    e_base = torch.empty(2, 32, device="meta")
    grads = torch.empty(2, 32, device="meta")
    a = bias.projections(grads, d_z=4, seed=0)
    assert a.device.type == "meta" and a.shape == (2, 32, 4)
    alpha = bias.alphas(e_base, grads, 1.0)
    out = bias.embeddings(np.zeros((3, 8)), e_base, a, grads, alpha)
    assert out.device.type == "meta" and out.shape == (3, 2, 32)
    assert bias.constrain(e_base, grads, 0.5).device.type == "meta"


def test_initial_step_follows_eq_14() -> None:
    """Moving ξ_i by σ_0 along ∇ᵀA_i changes σ(g_i) by δ(σ(g)) (to first order)."""
    grads = torch.randn(2, 48, dtype=torch.float64)
    a = bias.projections(grads, d_z=16, seed=1)
    delta = 1e-4
    sigma0 = bias.initial_sigma(a, grads, delta)
    changes = []
    for i in range(2):
        v = grads[i] @ a[i]
        step = sigma0 * v / v.norm()
        g = (a[i] @ step) @ grads[i] / (grads[i] @ grads[i])
        changes.append(float(torch.sigmoid(g) - 0.5))
    assert max(changes) == pytest.approx(delta, rel=1e-3)  # the binding token hits δ exactly
    assert min(changes) <= delta * (1 + 1e-3)


def test_population_size_follows_the_formula() -> None:
    assert bias.popsize(16) == int(4 + math.log(32)) == 7
    assert bias.popsize(16, "pycma") == 4 + int(3 * math.log(32)) == 14
    assert bias.popsize(4) == int(4 + math.log(8)) == 6
    with pytest.raises(ValueError):
        bias.popsize(16, "magic")


def test_kl_is_zero_when_p_equals_q(refiner: Refiner) -> None:
    logits = torch.randn(3, 5, 11)
    valid = torch.ones(3, 5, dtype=torch.bool)
    assert kl_p_q(logits, logits, valid).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_p_q(logits, torch.randn(3, 5, 11), valid).item() > 0
    # the same refiner, the same prompt: p_im = q_im, KL = 0 even with the masked markers
    targets = [refiner.target_ids("Give me tips to manage my time.", 8)]
    with torch.no_grad():
        p, v = refiner.target_logits([p_x(QUERIES[1])], targets, refiner.base_embeddings())
        q, _ = refiner.target_logits([p_x(QUERIES[1])], targets, refiner.base_embeddings())
        q2, _ = refiner.target_logits(
            [p_xy(QUERIES[1], "a", "b")], targets, refiner.base_embeddings()
        )
    assert kl_p_q(p, q, v).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_p_q(p, q2, v).item() > 1e-4


def test_prompt_longer_than_the_limit_is_an_error(smollm2: str) -> None:
    from recast.errors import RecastError

    small = Refiner.load(smollm2)
    small.max_prompt_tokens = 32
    with pytest.raises(RecastError, match="over the limit of 32"):
        small.encode_prefix([p_x(QUERIES[0] * 10)])
