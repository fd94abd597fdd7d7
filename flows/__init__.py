"""Prefect flows: compositions of the tasks in tasks/ (no logic of their own)."""
