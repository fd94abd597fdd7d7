"""scripts/gpu_check: its code paths on the CPU with tiny shapes (the GPU run uses the same
code with real shapes), its refusal to run without CUDA, and its peak table."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_goes_through_recast_code_and_reports_figures(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable}  # the wrapper, with this test's interpreter
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "gpu_check.sh"),
            "--device",
            "cpu",
            "--quick",
            "--tokenizer",
            "synthetic",  # the path a GPU machine takes: no model cache there
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in (
        "score    :",
        "generate :",
        "search   :",
        "finetune :",
        "serve    :",
        "reward   :",
        "judge    :",
        "total wall",
    ):
        assert line in proc.stdout, proc.stdout
    report = json.loads(out.read_text())
    assert report["device_type"] == "cpu" and report["dtype"] == "bfloat16" and report["quick"]
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == [
        "generator tiny",
        "generator tiny-wide",
        "CMA-ES iteration (refiner tiny, generator tiny)",
        "fine-tuning step (refiner tiny)",
        "serve micro-batching (refiner tiny)",
        "reward model (encoder tiny BERT)",
        "judge (pointwise tiny-qwen2, ensemble with r_ω)",
    ]
    assert all(p["error"] is None for p in report["parts"])
    for name in ("generator tiny", "generator tiny-wide"):
        score, generate = parts[name]["figures"]["score"], parts[name]["figures"]["generate"]
        # 8 samples × (24 prompt + 8 target + 3 chat-template tokens): the word-level tokenizer
        # makes the count exact, so the tokens/s and FLOP figures rest on a known token count
        assert score["tokens"] == 8 * (24 + 8 + 3)
        assert score["tokens_per_s"] > 0 and math.isfinite(score["mean_ce"])
        assert score["share_of_peak"] is None  # no datasheet peak for a CPU
        assert 0 < generate["new_tokens"] <= 4 * 8 and generate["tokens_per_s"] > 0
        assert parts[name]["peak_rss_gib"] > 0 and parts[name]["seconds"] > 0
    search = parts["CMA-ES iteration (refiner tiny, generator tiny)"]["figures"]["search"]
    assert search["popsize"] == 7 and search["es_pairs"] == 3
    assert math.isfinite(search["fitness_at_zero"]) and math.isfinite(search["best_fitness"])
    assert search["generator_scored_samples"] >= 3  # F(0) at least reached the generator
    tune = parts["fine-tuning step (refiner tiny)"]["figures"]["finetune"]
    assert math.isfinite(tune["loss"]) and tune["kl"] >= 0
    # pure bf16: an AdamW step of lr 1e-5 moves only the small weights; most round away
    for share in tune["share_of_weights_changed"].values():
        assert 0 < share < 0.5
    serve = parts["serve micro-batching (refiner tiny)"]["figures"]["serve"]
    assert serve["queries"] == 4
    for state in ("cold", "warm"):
        assert serve[f"single_{state}_queries_per_s"] > 0
        assert serve[f"batched_{state}_queries_per_s"] > 0
        # what each mode ran as: one query a call, against batches (4 submitted together; a
        # stall past the 10 ms window on a loaded machine may split them, never into ones)
        assert serve[f"single_{state}_batches"] == [1, 1, 1, 1]
        assert sum(serve[f"batched_{state}_batches"]) == 4
        assert max(serve[f"batched_{state}_batches"]) > 1
    reward = parts["reward model (encoder tiny BERT)"]["figures"]["reward"]
    assert reward["steps"] == 3 and reward["seconds_per_100_steps"] > 0
    assert math.isfinite(reward["last_loss"]) and reward["scored"] == 3 * 2 * 2
    judge = parts["judge (pointwise tiny-qwen2, ensemble with r_ω)"]["figures"]["judge"]
    assert judge["pairs"] == 3 and judge["cut"] < judge["answer_words"]
    assert judge["now_shares_prefix"] is True  # on the CPU: the default shares it
    for way in ("filed", "today", "shared", "now", "ensemble"):
        assert judge[f"{way}_cold_pairs_per_s"] > 0 and judge[f"{way}_warm_pairs_per_s"] > 0
        assert sum(judge[f"{way}_outcomes"].values()) == 3
    # the same log-odds by every path, up to bf16 rounding: far below their spread over answers
    # (a prefix cache at the wrong positions, or another token's logit, moves them as much)
    assert judge["log_odds_std"] > 0
    assert judge["max_diff_shared_vs_whole_prompts"] < 0.25 * judge["log_odds_std"]
    assert judge["max_diff_one_vs_two_passes"] < 0.25 * judge["log_odds_std"]


def test_a_failing_part_is_reported_the_rest_still_runs_and_the_exit_is_nonzero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()

    def broken(*_: object) -> None:
        raise RuntimeError("planted failure")

    monkeypatch.setattr(script, "run_search_part", broken)
    out = tmp_path / "gpu_check.json"
    argv = ["--device", "cpu", "--quick", "--tokenizer", "synthetic", "--json", str(out)]
    assert script.main(argv) == 1
    parts = {p["name"]: p for p in json.loads(out.read_text())["parts"]}
    assert parts["CMA-ES iteration (refiner tiny, generator tiny)"]["error"] == (
        "RuntimeError: planted failure"
    )
    assert parts["fine-tuning step (refiner tiny)"]["error"] is None  # ran after the failure
    assert "finetune :" in capsys.readouterr().out


def test_without_cuda_it_stops_with_a_message_unless_cpu_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    script = load_script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        script.main(["--quick"])
    assert "no CUDA device" in str(stop.value.code) and "--device cpu" in str(stop.value.code)
    assert script.pick_device("cpu") == "cpu"


def test_peak_table_matches_device_names() -> None:
    script = load_script()
    assert script.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert script.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert script.peak_tflops("NVIDIA H200") == 989.0
    assert script.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_synthetic_tokenizer_round_trips_token_counts() -> None:
    from recast.generator.local import chat_ids

    script = load_script()
    tokenizer, described = script.load_tokenizer("synthetic", 512)
    assert len(tokenizer) == 510 and "synthetic" in described
    texts = script.Texts(tokenizer, seed=0)
    text = texts(17)
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 17
    assert len(chat_ids(tokenizer, text)) == 17 + 3
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
