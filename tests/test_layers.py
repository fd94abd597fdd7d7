"""The stage layer's rules, read from the source: only the stages (and their callers: the CLI,
the former address evaluation/stages.py) import recast.stages; the evaluation does not import
the Align-Pro trainer (the old cycle evaluation -> alignpro -> evaluation.reward); and the
ablation and round paths are spelled in recast.layout alone."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src" / "recast"
CALLERS = {"cli.py", "evaluation/stages.py"}  # the entry point, and the re-export kept for `main`


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def library() -> list[Path]:
    return [
        p
        for p in sorted(SRC.rglob("*.py"))
        if "stages" not in p.relative_to(SRC).parts[:1] and str(p.relative_to(SRC)) not in CALLERS
    ]


def test_no_library_module_imports_a_stage() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in library()
        if any(m == "recast.stages" or m.startswith("recast.stages.") for m in imports(p))
    ]
    assert offenders == []


def test_no_library_module_writes_the_metrics_folder() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in library()
        if any(s in p.read_text(encoding="utf-8") for s in ('Path("metrics")', "METRICS_DIR"))
    ]
    assert offenders == []


def test_the_evaluation_does_not_import_the_align_pro_trainer() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in sorted((SRC / "evaluation").glob("*.py"))
        # the trainer, not its config dataclass (recast.alignpro_config imports nothing of ours)
        if p.name != "stages.py"
        and any(m == "recast.alignpro" or m.startswith("recast.alignpro.") for m in imports(p))
    ]
    assert offenders == []


def test_round_folders_are_built_in_layout_only() -> None:
    """No `<dir> / f"round-{s}"` outside recast.layout (an MLflow run may be named so)."""
    offenders = [
        str(p.relative_to(SRC))
        for p in sorted(SRC.rglob("*.py"))
        if p.name != "layout.py" and '/ f"round-{' in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_every_evaluated_system_is_registered() -> None:
    from recast.config import EvaluateParams
    from recast.evaluation.systems import SYSTEMS
    from recast.layout import ABLATIONS

    assert set(EvaluateParams().systems) == set(SYSTEMS)
    assert set(ABLATIONS.values()) <= set(SYSTEMS)
