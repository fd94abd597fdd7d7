"""A Bradley-Terry reward model r_ω(y|x) (survey 003, Eq. 4): a small encoder (the packaged
MiniLM by default), mean-pooled, with a scalar head, trained on the preference pairs so that
r_ω(y+|x) > r_ω(y-|x)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from recast.records import PreferencePair


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Eq. 4 averaged over the batch: -log σ(r_ω(y+|x) - r_ω(y-|x))."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(nn.Module):
    """r_ω(y|x) = w · meanpool(encoder([x; y])) + b."""

    def __init__(self, encoder: nn.Module, tokenizer: object, max_length: int = 256) -> None:
        super().__init__()
        self.encoder, self.tokenizer, self.max_length = encoder, tokenizer, max_length
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    @classmethod
    def from_encoder(cls, spec: str, max_length: int = 256) -> RewardModel:
        from transformers import AutoModel, AutoTokenizer

        from recast.models.load import resolve

        path = resolve(spec).path
        return cls(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), max_length)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, questions: list[str], answers: list[str]) -> torch.Tensor:
        batch = self.tokenizer(  # type: ignore[operator]
            questions,
            answers,
            truncation="longest_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return self.head(pooled).squeeze(-1)

    @torch.inference_mode()
    def score(self, questions: list[str], answers: list[str], batch_size: int = 32) -> list[float]:
        self.eval()
        out: list[float] = []
        for s in range(0, len(questions), batch_size):
            out += self(questions[s : s + batch_size], answers[s : s + batch_size]).tolist()
        return out

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path / "encoder")
        self.tokenizer.save_pretrained(path / "encoder")  # type: ignore[attr-defined]
        torch.save(
            {"head": self.head.state_dict(), "max_length": self.max_length}, path / "head.pt"
        )

    @classmethod
    def load(cls, path: Path) -> RewardModel:
        model = cls.from_encoder(str(path / "encoder"))
        state = torch.load(path / "head.pt", weights_only=True)
        model.head.load_state_dict(state["head"])
        model.max_length = state["max_length"]
        return model


def train_reward(
    model: RewardModel,
    pairs: list[PreferencePair],
    epochs: int = 1,
    lr: float = 2e-5,
    batch_size: int = 16,
    seed: int = 0,
    on_step: Callable[[int, float], None] = lambda step, loss: None,
) -> list[float]:
    """Minimize Eq. 4 with AdamW; returns the loss per step."""
    torch.manual_seed(seed)
    order = list(range(len(pairs)))
    rng = random.Random(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    for _ in range(epochs):
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            batch = [pairs[i] for i in order[s : s + batch_size]]
            questions = [p.prompt for p in batch]
            r = model(questions * 2, [p.chosen for p in batch] + [p.rejected for p in batch])
            loss = bt_loss(r[: len(batch)], r[len(batch) :])
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(float(loss))
            on_step(len(losses), losses[-1])
    model.eval()
    return losses


def pairwise_accuracy(model: RewardModel, pairs: list[PreferencePair]) -> float:
    """Share of pairs with r(y+|x) > r(y-|x): the held-out accuracy the report prints."""
    questions = [p.prompt for p in pairs]
    chosen = model.score(questions, [p.chosen for p in pairs])
    rejected = model.score(questions, [p.rejected for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
