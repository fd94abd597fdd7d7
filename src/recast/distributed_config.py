"""The `orchestration` params section, beside recast.distributed (fan-out).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OrchestrationParams:
    """How Prefect runs the population's fitness evaluations and the evaluation sets."""

    runner: str = "local"
    """'local': in the flow's process (the population batched, the sets in turn); 'dask' or
    'ray': one Prefect task per candidate ξ and per evaluation set, mapped onto that cluster
    (prefect-dask / prefect-ray)."""
    address: str | None = None
    """Scheduler address of an existing cluster (dask: tcp://host:8786, ray: ray://host:10001);
    None starts a local cluster of `workers` processes."""
    workers: int = 2
    """Processes of the local cluster started when `address` is None."""
