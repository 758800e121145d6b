"""Atomic file writes: a temporary file with an unpredictable name in the target's folder,
renamed over the target only when it is complete.

The temporary name comes from :func:`tempfile.mkstemp` (created with ``O_EXCL``, mode 0600), so a
file or symlink planted in advance under a guessable name (``.NAME.tmp-PID``) in a shared folder
can neither be written through nor make the write fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh, empty temporary path beside `target`; on normal exit rename it onto
    `target`, on an exception delete it. Give writers that insist on a file extension (matplotlib,
    numpy) the matching `suffix`."""
    target = Path(target)
    tmp = temporary_file(target.parent, f".{target.name}.", suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(
    target: str | os.PathLike, before_replace: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield a new, empty folder beside `target` (mkdtemp, then the mode ``mkdir`` gives); on
    normal exit it becomes `target`, an existing `target` being moved aside and deleted (after
    `before_replace(target)`, which may raise to keep it); on an exception it is deleted."""
    target = Path(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        work.chmod(new_file_mode(0o777))  # mkdtemp makes it private; the result is not
        yield work
        if os.path.lexists(target):
            if before_replace is not None:
                before_replace(target)
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(work, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def new_file_mode(base: int = 0o666) -> int:
    """`base` less the process's umask: the mode ``open()`` (0o666) or ``mkdir`` (0o777) gives."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def temporary_file(folder: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Path:
    """A new, empty file ``<prefix><random><suffix>`` in `folder` (mkstemp: never a name planted in
    advance), with the mode ``open()`` would give it (mkstemp's own is private)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, new_file_mode())
    finally:
        os.close(fd)
    return Path(name)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that `path` is never seen half-written."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that `path` is never seen half-written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: object, indent: int | None = 1) -> None:
    """Write `obj` as JSON (plus a newline) to `path` so that it is never seen half-written."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")
