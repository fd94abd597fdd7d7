"""Atomic output: a killed process never leaves a half-written file behind, and a failed stage
never leaves half of its outputs replaced (`replaced`, `undoable`)."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it.

    The rename is atomic on POSIX because the temporary file lives in the same directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# (output, holder): the holder folder keeps the output's previous version as `old` until the
# enclosing `undoable` block ends, so it can be put back if a later stage fails.
_Journal = list[tuple[Path, Path]]
_JOURNAL: contextvars.ContextVar[_Journal | None] = contextvars.ContextVar(
    "recast_io_journal", default=None
)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _holder(path: Path) -> Path:
    """A fresh hidden folder beside `path`: same file system, so every move is a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    holder.chmod(0o777 & ~_UMASK)  # mkdtemp makes it owner-only; the output inherits nothing
    return holder


def _install(path: Path, new: Path | None, holder: Path, journal: _Journal | None) -> None:
    """Move `path` aside into `holder` (if it exists), then `new` (if any) into its place."""
    if path.exists() or path.is_symlink():
        os.replace(path, holder / "old")
    if new is not None:
        os.replace(new, path)
    if journal is None:
        shutil.rmtree(holder, ignore_errors=True)
    else:
        journal.append((path, holder))


@contextlib.contextmanager
def replaced(
    *paths: str | Path, keep_on: tuple[type[BaseException], ...] = ()
) -> Iterator[list[Path]]:
    """Replace a stage's outputs (files or folders) all together, or not at all.

    Yields one temporary path per output, beside it and not yet created: the stage writes a file
    or a whole folder there. When the block succeeds, every output must have been written, and
    each one replaces its previous version (a folder as a whole: no file of an older run
    lingers). When it raises, the temporary paths are deleted and the previous outputs are left
    as they were, byte for byte. An exception of a `keep_on` type still installs what was written
    (a validation report that explains the failure), and an enclosing `undoable` does not take
    it back. The installs are renames done one after another once the stage has finished, so a
    stage that fails never replaces anything; only a kill between two renames can mix versions.
    """
    finals = [Path(p) for p in paths]
    holders = [_holder(p) for p in finals]
    temps = [h / p.name for h, p in zip(holders, finals, strict=True)]
    try:
        yield temps
    except keep_on:
        for final, temp, holder in zip(finals, temps, holders, strict=True):
            if temp.exists():
                _install(final, temp, holder, None)
            else:
                shutil.rmtree(holder, ignore_errors=True)
        raise
    except BaseException:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)
        raise
    missing = [str(final) for final, temp in zip(finals, temps, strict=True) if not temp.exists()]
    if missing:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)
        raise RuntimeError(f"the stage finished without writing {', '.join(missing)}")
    journal = _JOURNAL.get()
    for final, temp, holder in zip(finals, temps, holders, strict=True):
        _install(final, temp, holder, journal)


def remove(path: str | Path) -> None:
    """Delete a file or folder; inside `undoable`, it comes back if the block fails."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        _install(path, None, _holder(path), _JOURNAL.get())


@contextlib.contextmanager
def undoable() -> Iterator[None]:
    """Several stages as one: if the block raises, every output that a `replaced` (or `remove`)
    inside it installed goes back to its version from before the block (or away, if it had
    none), so `recast data build` failing in its third stage leaves the first two untouched.
    Nested blocks join the outermost one."""
    if _JOURNAL.get() is not None:
        yield
        return
    journal: _Journal = []
    token = _JOURNAL.set(journal)
    try:
        yield
    except BaseException:
        for path, holder in reversed(journal):
            _delete(path)
            if (holder / "old").exists() or (holder / "old").is_symlink():
                os.replace(holder / "old", path)
            shutil.rmtree(holder, ignore_errors=True)
        raise
    else:
        for _, holder in journal:
            shutil.rmtree(holder, ignore_errors=True)
    finally:
        _JOURNAL.reset(token)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path) -> pa.Table:
    return pq.read_table(path)


def write_npy(path: str | Path, array: Any) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a handle: np.save adds no suffix
        np.save(f, np.asarray(array))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(value: Any, **json_kwargs: Any) -> str:
    """The 16-hex key of `value`: SHA-256 of its canonical JSON (sorted keys). Every cache and
    checkpoint key in recast is one, so the same inputs give the same key on every machine;
    `json_kwargs` (default=str, separators, ...) only where a key was built so before, so that
    existing caches keep their keys."""
    return digest_bytes(json.dumps(value, sort_keys=True, **json_kwargs).encode("utf-8"))


def digest_bytes(*blobs: bytes) -> str:
    """The 16-hex key of raw bytes (tensors, joined ids), as `digest` cuts it."""
    h = hashlib.sha256()
    for blob in blobs:
        h.update(blob)
    return h.hexdigest()[:16]


def save_pretrained(model: Any, tokenizer: Any, path: str | Path) -> None:
    """A HF model + tokenizer folder, replaced whole or not at all (a kill mid-save leaves the
    previous folder, or none, never half of one)."""
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
