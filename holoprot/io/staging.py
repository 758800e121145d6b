"""The staging folder of a table being written: its parts, their manifest, and what a resumed run
keeps, refuses or deletes there (the writer is `holoprot.io.output.ResidueTableWriter`).

Rows are written once, in the order they are given, into *parts*: Parquet files in a staging
folder (``<out>.partial/`` for a file output, ``<DIR>/_temporary/`` for a folder), each written
under a hidden temporary name and renamed when complete, with ``manifest.json`` listing the
complete parts and the inputs (``source_path`` values) they hold. A part is closed at the first
input boundary after `PART_ROWS` rows or `PART_BYTES` bytes (an input larger than that, written a
chunk at a time, is in one part all the same), so a killed run loses at most the part it was
writing; a resumed run keeps the manifest's parts, deletes the files the killed run left beyond
them and skips their inputs. Part boundaries depend only on the rows (and, by a few bytes per
chunk of the byte count, on how an input was chunked), so a resumed run writes the same parts as
an uninterrupted one.

Names read back from files are trusted no further than the folder they name: a manifest's part
names must be ``part-NNNNNN.parquet`` (`PART_NAME`), a staging folder that is a symbolic link (or
not a folder) is refused (`check_real_folder`), and a file in it that holoprot does not write is
refused, never deleted.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from holoprot._util.atomic import write_json_atomic
from holoprot.errors import HoloprotError

#: A part is closed at the first input boundary past either bound (about 10 s of `holoprot
#: zernike` or 45 s of `holoprot embed` on 2 CPU cores).
PART_ROWS = 65536
PART_BYTES = 256 << 20

STAGING_SUFFIX = ".partial"  # file output: <out>.partial/
STAGING_DIR = "_temporary"  # folder output: <DIR>/_temporary/
MANIFEST = "manifest.json"  # inside a staging folder
_FORMAT = "holoprot-parts-1"
#: The name of every part the writer makes (`_part_name`); a manifest naming anything else is
#: refused, so a listed name can never leave its folder.
PART_NAME = re.compile(r"part-\d{6}\.parquet")
#: Temporary names a killed run may leave in a staging folder: a part being written, the manifest
#: being replaced, a file output being merged (``.part-000003.parquet.<random>.tmp``,
#: ``.manifest.json.<random>.tmp``, ``.merged.parquet.<random>.tmp``; also the fixed names of
#: earlier versions, ``.part-000003.parquet.tmp`` and ``.manifest.json.tmp-PID``).
_LEFTOVER = re.compile(r"\.(part-\d{6}\.parquet|manifest\.json|merged\.parquet)\..+")


def _part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


@dataclass
class _Part:
    file: str
    sources: list[tuple[str, int]] = field(default_factory=list)  # (source_path, rows) in order

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.sources)


def _read_manifest(path: Path, action: str = "cannot resume from it") -> list[_Part] | None:
    """The parts a manifest lists, or None when there is none; HoloprotError (one line, naming
    `path`) for an unreadable manifest or a part name the writer does not make."""
    if not os.path.lexists(path):
        return None
    try:
        if not path.is_file() or path.is_symlink():
            raise ValueError("not a regular file")
        data = json.loads(path.read_text())
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        parts = [_Part(p["file"], [(s, int(n)) for s, n in p["sources"]]) for p in data["parts"]]
        for part in parts:
            if not isinstance(part.file, str) or not PART_NAME.fullmatch(part.file):
                raise ValueError(f"part name {part.file!r} is not one holoprot writes")
            if not all(isinstance(s, str) and n >= 0 for s, n in part.sources):
                raise ValueError(f"malformed sources of {part.file}")
        if len({p.file for p in parts}) != len(parts):
            raise ValueError("a part is listed twice")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HoloprotError(f"{path}: {action} ({exc})") from exc
    return parts


def _write_manifest(path: Path, parts: list[_Part]) -> None:
    """The part manifest that `_read_manifest` reads, written atomically."""
    data = {"format": _FORMAT, "parts": [{"file": p.file, "sources": p.sources} for p in parts]}
    write_json_atomic(path, data)


def _source_runs(table: pa.Table) -> list[tuple[str, int]]:
    """(source_path, rows) of each run of equal source paths, in order."""
    column = table.column("source_path").combine_chunks()
    if len(column) == 0:
        return []
    if column.null_count == 0 and len(column.unique()) == 1:
        return [(column[0].as_py(), len(column))]
    runs: list[tuple[str, int]] = []
    for value in column.to_pylist():
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + 1)
        else:
            runs.append((value, 1))
    return runs


#: What a write that failed for want of space says: a full disk, a file past a size limit (the
#: file system's, or RLIMIT_FSIZE: ``ulimit -f``), a full quota.
_NO_SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file too large",
    **({errno.EDQUOT: "disk quota exceeded"} if hasattr(errno, "EDQUOT") else {}),
}
_ERRNO_IN_TEXT = re.compile(r"errno (\d+)", re.IGNORECASE)


def no_space_reason(exc: BaseException) -> str | None:
    """Why a write failed for want of space (``no space left on device (errno 28)``), or None
    for any other failure: an OSError with that errno, or an error whose message names it, as
    pyarrow's do (``Error writing bytes to file. Detail: [errno 28] No space left on device``)."""
    if not isinstance(exc, (OSError, pa.ArrowException)):
        return None
    code = getattr(exc, "errno", None)
    if code not in _NO_SPACE:
        text = str(exc)
        codes = [int(c) for c in _ERRNO_IN_TEXT.findall(text)]
        codes += [c for c, words in _NO_SPACE.items() if words in text.lower()]
        code = next((c for c in codes if c in _NO_SPACE), None)
        if code is None:
            return None
    return f"{_NO_SPACE[code]} (errno {code})"


def check_real_folder(path: Path, what: str) -> None:
    """Refuse `path` (when it exists) unless it is a folder itself, not a symbolic link to one:
    a linked output or staging folder would make a resume read, rename or delete files
    elsewhere."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise HoloprotError(
            f"{path}: {what} is a symbolic link; refusing to follow it (remove the link, or"
            " write to a real folder)"
        )
    if not stat.S_ISDIR(mode):
        raise HoloprotError(f"{path}: {what} is not a folder; move it away")


def _is_file(path: Path, links: bool = False) -> bool:
    """Whether `path` is a regular file (or, with `links`, a symbolic link, which deleting
    removes without touching its target)."""
    mode = os.lstat(path).st_mode
    return stat.S_ISREG(mode) or (links and stat.S_ISLNK(mode))


def remove_leftovers(staging: Path, listed: set[str]) -> None:
    """Delete the files a killed run left in the staging folder beyond its manifest (parts it
    did not record, temporary files); anything else there is refused, not deleted."""
    strays, strangers = [], []
    for entry in staging.iterdir():
        if entry.name in listed:
            continue
        ours = PART_NAME.fullmatch(entry.name) or _LEFTOVER.fullmatch(entry.name)
        (strays if ours and _is_file(entry, links=True) else strangers).append(entry.name)
    if strangers:
        raise HoloprotError(
            f"{staging}: holds files holoprot did not write"
            f" ({', '.join(sorted(strangers)[:3])}); move them away to resume"
        )
    for name in strays:
        (staging / name).unlink()


def check_part(file: Path, schema: pa.Schema) -> None:
    """A part to keep must be a regular file (not a link to a file elsewhere) of this run's
    columns and settings."""
    try:
        regular = _is_file(file)
    except FileNotFoundError:
        regular = True  # reported by check_schema
    if not regular:
        raise HoloprotError(f"{file}: cannot resume, the part is not a regular file")
    check_schema(file, schema)


def check_schema(file: Path, schema: pa.Schema) -> None:
    """Refuse to resume from `file` unless it has `schema`'s columns and metadata."""
    try:
        existing = pq.read_schema(file)
    except (OSError, pa.ArrowException) as exc:
        raise HoloprotError(f"{file}: cannot resume from it ({exc})") from exc
    if existing.remove_metadata() != schema.remove_metadata():
        raise HoloprotError(f"{file}: cannot resume, its columns differ from this run's")
    if existing.metadata != schema.metadata:
        raise HoloprotError(f"{file}: cannot resume, it was made with other settings or weights")


__all__ = [
    "MANIFEST",
    "PART_BYTES",
    "PART_NAME",
    "PART_ROWS",
    "STAGING_DIR",
    "STAGING_SUFFIX",
    "check_part",
    "check_real_folder",
    "check_schema",
    "no_space_reason",
    "remove_leftovers",
]
