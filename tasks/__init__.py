"""Prefect tasks: thin wrappers around recast library functions (no logic of their own)."""
