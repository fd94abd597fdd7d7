"""Prefect tasks: one per DVC stage, calling its recast.stages function (no logic of its own)."""
