"""Turn command-line input items (files, folders, globs, ``@list`` files) into structure paths.

Each item is one of:

* an existing file: taken as is (any name; the parser sniffs the format);
* an existing directory: its structure files (:data:`STRUCTURE_SUFFIXES`, case-insensitive),
  searched recursively unless ``recursive=False``, sorted;
* a glob pattern (``data/*.cif.gz``, ``**`` allowed): its matching files (whatever their suffix;
  matched folders are ignored), sorted;
* ``@list.txt``: one item per line (blank lines and lines starting with ``#`` ignored); relative
  entries are relative to the list file's folder and may be files, folders or globs (not lists).

The result keeps the order of the items, each expansion sorted, duplicates (same resolved path)
removed keeping the first. Errors raise :class:`~holoprot.errors.InputError` naming the item.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from holoprot.errors import HoloprotError, InputError

__all__ = ["STRUCTURE_SUFFIXES", "expand_inputs", "is_structure_file"]

_BASE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
STRUCTURE_SUFFIXES = _BASE_SUFFIXES + tuple(s + ".gz" for s in _BASE_SUFFIXES)
_GLOB_CHARS = frozenset("*?[")


def is_structure_file(path: str | os.PathLike) -> bool:
    """Whether a file name ends with one of :data:`STRUCTURE_SUFFIXES` (case-insensitive)."""
    return Path(path).name.lower().endswith(STRUCTURE_SUFFIXES)


def expand_inputs(items: Sequence[str], *, recursive: bool = True) -> list[Path]:
    """Expand files, directories, glob patterns and ``@list`` files into unique structure paths."""
    result: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        if item.startswith("@"):
            paths = _expand_list(item, recursive)
        else:
            paths = _expand_item(item, Path(), item, recursive)
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                result.append(p)
    return result


def _expand_item(entry: str, base: Path, shown: str, recursive: bool) -> list[Path]:
    """Expand one file/dir/glob entry; relative entries are taken relative to ``base``."""
    path = base / Path(entry).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(_structure_files(path, recursive))
        if not found:
            kind = "structure files (" + ", ".join(_BASE_SUFFIXES) + ", optionally .gz)"
            raise InputError(shown, f"directory holds no {kind}")
        return found
    if _GLOB_CHARS & set(entry):
        matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
        files = [m for m in matches if m.is_file()]
        if not files:
            raise InputError(shown, "pattern matches no file")
        return files
    if path.exists():
        raise InputError(shown, "not a regular file or directory")
    raise InputError(shown, "no such file or directory")


def _structure_files(folder: Path, recursive: bool) -> Iterable[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return (p for p in candidates if is_structure_file(p) and p.is_file())


def _expand_list(item: str, recursive: bool) -> list[Path]:
    list_path = Path(item[1:]).expanduser()
    try:
        text = list_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(item, f"cannot read list file ({reason})") from None
    entries = [
        (lineno, line.strip())
        for lineno, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not entries:
        raise InputError(item, "list file names no path")
    base = list_path.parent
    paths: list[Path] = []
    for lineno, entry in entries:
        if entry.startswith("@"):
            raise InputError(item, f"entry {lineno} '{entry}': nested list files are not supported")
        paths.extend(_expand_item(entry, base, f"{item} line {lineno} '{entry}'", recursive))
    return paths


def check_unique_ids(paths: Sequence[str | os.PathLike]) -> None:
    """Refuse two inputs whose rows would share a `structure_id` (the file name without its
    structure extension and ``.gz``: ``a/1abc.cif.gz`` and ``b/1abc.pdb`` would), naming both
    paths."""
    from holoprot.io.structure import structure_id

    seen: dict[str, str] = {}
    for path in paths:
        key = structure_id(path)
        first = seen.setdefault(key, str(path))
        if first != str(path):
            raise HoloprotError(
                f"{first} and {path}: both give structure_id {key!r}; rename one or embed them"
                " in separate runs"
            )
