"""The black-box generator interface every backend implements.

The paper keeps the generator behind vLLM so its weights cannot be touched; recast only ever
asks it for text (`generate`) and for the cross-entropy of a target (`score`), which is exactly
what the CMA-ES fitness CE(f(p_im(x; ξ)), y) of Eq. 11 needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Decoding settings for `generate`."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens per prompt."""
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 disables it)."""
    top_k: int = 0
    """Top-k sampling (0 disables it)."""
    seed: int | None = None
    """Seed for sampling; None leaves the backend's RNG alone."""


@runtime_checkable
class Generator(Protocol):
    """A frozen LLM seen only through text in, text or scores out."""

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        """One answer per prompt; each prompt is sent as a single user turn (chat template)."""
        ...

    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        """Per-sample mean token cross-entropy (nats) of `targets[i]` as the assistant's answer
        to the user turn `prompts[i]`: -1/|y| Σ_t log p(y_t | chat(x), y_<t)."""
        ...

    def close(self) -> None:
        """Release connections / memory."""
        ...
