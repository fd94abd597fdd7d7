"""The `serve` params section, beside recast.serve (the OpenAI-compatible proxy).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeParams:
    """`recast serve`: the refiner as an OpenAI-compatible proxy in front of an LLM."""

    upstream: str = "local"
    """The LLM's OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1), or 'local': the
    generator section's model in this process."""
    checkpoint: str | None = None
    """The refiner: a folder or a registry URI (None: models:/<registry.name>@champion)."""
    host: str = "127.0.0.1"
    """Interface to bind; anything but loopback exposes the proxy, and the upstream key it holds."""
    port: int = 8100
    """TCP port."""
    max_batch: int = 8
    """Most queries refined in one batched decode."""
    batch_window_ms: float = 10.0
    """How long a batch's first query waits for others to join it."""
    max_queue: int = 64
    """Most queries waiting for the refiner; a request beyond this is answered 503."""
    upstream_timeout_s: float = 120.0
    """Seconds to wait for the upstream's answer (while streaming: between two chunks) -> 504."""
    api_key_env: str | None = None
    """Environment variable with the upstream's key, sent as a bearer token (None: none sent)."""
    forward_authorization: bool = False
    """Send the client's own Authorization header to the upstream (when api_key_env is None)."""
    reload_interval_s: float = 60.0
    """How often the registry alias is checked for a new champion (0: only on SIGHUP)."""
    return_refined: bool = False
    """Add {x, x', verdict} to every response (per request: header x-recast-return-refined: 1).
    The guard and the length of x' are the refiner section's (guard, max_refined_tokens)."""
