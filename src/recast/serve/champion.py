"""The refiner behind the proxy, swapped for the new champion when the registry alias moves.

A reload loads the new weights on their own thread while the old refiner keeps serving; the swap
is one reference assignment, so a batch runs wholly on the old or wholly on the new refiner and
no request is dropped or failed by it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from recast.refiner.config import RedrawParams

log = logging.getLogger("recast.serve")


class RefinedLike(Protocol):
    """What the proxy reads of a refinement (recast.refiner.refine.Refined)."""

    @property
    def x(self) -> str: ...
    @property
    def x_prime(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def fallback(self) -> bool: ...
    @property
    def sent(self) -> str: ...


RefineBatch = Callable[[list[str]], Sequence[RefinedLike]]


def registry_alias(spec: str) -> tuple[str, str] | None:
    """(name, alias) of a `models:/NAME@ALIAS` spec, else None."""
    if not spec.startswith("models:/") or "@" not in spec:
        return None
    name, _, alias = spec.removeprefix("models:/").partition("@")
    return name, alias


def alias_version(spec: str) -> str | None:
    """The registry version `models:/NAME@ALIAS` points at now (None for any other spec)."""
    parsed = registry_alias(spec)
    if parsed is None:
        return None
    import mlflow

    return str(mlflow.MlflowClient().get_model_version_by_alias(*parsed).version)


def pinned(spec: str, version: str | None) -> str:
    """The spec of exactly that version: loading `@champion` itself could race a promotion."""
    parsed = registry_alias(spec)
    if parsed is None or version is None:
        return spec
    return f"models:/{parsed[0]}/{version}"


class Champion:
    """Holds (label, refiner); `refine_batch` uses whichever is current when a batch starts.

    `load(spec) -> refiner` and `refine_with(refiner, xs) -> [Refined]` are injected so that the
    tests can script them; `version_of(spec)` says which registry version an alias points at
    (None: not a registry alias, so only a forced reload, SIGHUP, reloads)."""

    def __init__(
        self,
        spec: str,
        load: Callable[[str], Any],
        refine_with: Callable[[Any, list[str]], Sequence[RefinedLike]],
        version_of: Callable[[str], str | None] = alias_version,
    ) -> None:
        self.spec, self._load, self._refine_with, self._version_of = (
            spec,
            load,
            refine_with,
            version_of,
        )
        self._reload_lock = threading.Lock()  # one reload at a time (interval and SIGHUP)
        self.version = version_of(spec)
        self.label = pinned(spec, self.version)
        """What is serving: the spec, with the registry version pinned (x-recast-refiner)."""
        self._current: tuple[str, Any] = (self.label, load(self.label))
        self.reloads = 0
        self.loaded_at = time.time()

    def refine_batch(self, xs: list[str]) -> tuple[str, Sequence[RefinedLike]]:
        label, refiner = self._current  # one read: the batch never mixes two refiners
        return label, self._refine_with(refiner, xs)

    def check(self, force: bool = False) -> bool:
        """Reload if the alias moved (or `force`); True if a new refiner now serves. Blocking:
        call it off the event loop."""
        if not self._reload_lock.acquire(blocking=False):
            return False  # a reload is already under way
        try:
            try:
                version = self._version_of(self.spec)
            except Exception as e:  # a registry hiccup must not take the proxy down
                log.warning("champion check failed, keeping %s: %s", self.label, e)
                return False
            if version == self.version and not force:
                return False
            label = pinned(self.spec, version)
            start = time.perf_counter()
            try:
                refiner = self._load(label)
            except Exception as e:
                log.error("loading %s failed, keeping %s: %s", label, self.label, e)
                return False
            self._current = (label, refiner)
            self.version, self.label = version, label
            self.reloads += 1
            self.loaded_at = time.time()
            log.info("refiner reloaded: %s (%.1f s)", label, time.perf_counter() - start)
            return True
        finally:
            self._reload_lock.release()


def default_refine(
    max_new_tokens: int,
    guard: bool,
    check_encoder: str | None,
    batch_size: int,
    redraw: RedrawParams | None = None,
) -> Callable[[Any, list[str]], Sequence[RefinedLike]]:
    """The one refine path (recast.refiner.refine): x' per query, the check's verdict, and with
    `guard` the fallback to x; `redraw` (None: greedy only) redraws an x' that is not a
    rewrite."""
    from recast.refiner.refine import refine

    def refine_with(refiner: Any, xs: list[str]) -> Sequence[RefinedLike]:
        return refine(
            refiner,
            xs,
            max_new_tokens,
            guard=guard,
            batch_size=batch_size,
            check_encoder=check_encoder,
            redraw=redraw,
        )

    return refine_with
