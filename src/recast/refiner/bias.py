"""The CMA-ES search space: ξ -> embedding bias on [Z_s], [Z_e] (Eq. 9, 13, 14).

    e_i = e_i^b + B(A_i ξ_i)                  (Eq. 9)
    B(e_bi) = -α σ(g_i) ∇e_i^b                (Eq. 13)
    g_i = (e_bi · ∇e_i^b) / (∇e_i^b · ∇e_i^b)

∇e_i^b is the gradient of CE(p_im, y) with respect to the special-token embedding, every other
weight frozen; B keeps the bias on that (descent) direction and bounds its norm by α‖∇e_i^b‖.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def popsize(d_z: int, rule: str = "paper") -> int:
    """λ. 'paper': 4 + ln(Z_d) with Z_d = 2·d_z (§4, after Hansen & Kern), floored;
    'pycma': pycma's default 4 + ⌊3 ln Z_d⌋."""
    z_d = 2 * d_z
    if rule == "paper":
        return int(4 + math.log(z_d))
    if rule == "pycma":
        return 4 + int(3 * math.log(z_d))
    raise ValueError(f"popsize rule must be 'paper' or 'pycma', got {rule!r}")


def projections(grads: torch.Tensor, d_z: int, seed: int) -> torch.Tensor:
    """A_i ∈ R^{d×d_z} (Eq. 9), fixed and seeded: i.i.d. N(0, 1) entries scaled by ‖∇e_i^b‖.

    The scale makes g_i = (A_i ξ_i)·∇ / ‖∇‖² = ξ_i · (R_iᵀ ∇̂) with R_i standard normal, so g_i
    is of order ‖ξ_i‖ whatever the gradient's magnitude: ξ ~ 1 spans the sigmoid's range.
    Returns (2, d, d_z).
    """
    rng = np.random.default_rng(seed)
    d = grads.shape[-1]
    # drawn on the CPU with numpy so that A is the same on every device, then moved to ∇'s
    r = torch.from_numpy(rng.standard_normal((2, d, d_z))).to(grads.device, grads.dtype)
    return r * grads.norm(dim=-1)[:, None, None]


def constrain(e_b: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """B(e_b) of Eq. 13 for one or both tokens (last dim d): -α σ(g) ∇ with g the projection
    coefficient of e_b on ∇. The result is parallel to -∇ and ‖B‖ < α‖∇‖."""
    g = (e_b * grad).sum(-1, keepdim=True) / (grad * grad).sum(-1, keepdim=True)
    alpha = torch.as_tensor(alpha, dtype=grad.dtype, device=grad.device)
    if alpha.dim() == 1:
        alpha = alpha[:, None]
    return -alpha * torch.sigmoid(g) * grad


def embeddings(
    xi: np.ndarray,
    e_base: torch.Tensor,
    a: torch.Tensor,
    grads: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """Eq. 9: [e_0; e_1] = [e_0^b; e_1^b] + B(blockdiag(A_0, A_1) ξ). ξ is (2·d_z,) or a
    population (λ, 2·d_z); returns (2, d) or (λ, 2, d)."""
    x = torch.as_tensor(np.asarray(xi), dtype=a.dtype, device=a.device)
    single = x.dim() == 1
    x = x.reshape(-1, 2, a.shape[-1])  # (λ, 2, d_z): ξ = [ξ_0, ξ_1]
    e_b = torch.einsum("idk,nik->nid", a, x)  # A_i ξ_i
    out = e_base.to(a.dtype) + constrain(e_b, grads.to(a.dtype), alpha)
    return out[0] if single else out


def alphas(e_base: torch.Tensor, grads: torch.Tensor, scale: float) -> torch.Tensor:
    """α_i of Eq. 13, set so that the largest bias is `scale` times the token's own embedding
    norm: α_i = scale · ‖e_i^b‖ / ‖∇e_i^b‖. A raw α would mean nothing across models, whose
    gradient norms differ by orders of magnitude."""
    return scale * e_base.norm(dim=-1) / grads.norm(dim=-1)


def initial_sigma(a: torch.Tensor, grads: torch.Tensor, delta_sigma: float) -> float:
    """δ_0 = δ(ξ_i) from Eq. 14 with δ(σ(g)) = delta_sigma at ξ = 0 (g = 0, σ'(0) = 1/4):

        δ(σ(g)) = σ'(g) · δξ_i · (∇e_i^bᵀ A_i) / (∇e_i^b · ∇e_i^b)

    solved for a step δξ_i along ∇ᵀA_i (the direction that moves g fastest); the smaller of the
    two tokens' steps, since pycma takes one σ_0."""
    steps = []
    for i in range(2):
        v = grads[i] @ a[i]  # ∇e_i^bᵀ A_i ∈ R^{d_z}
        steps.append(delta_sigma * float(grads[i] @ grads[i]) / (0.25 * float(v.norm())))
    return min(steps)
