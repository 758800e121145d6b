"""Writing residue tables to disk: one Parquet file or a Parquet dataset folder, in one pass,
atomically and resumably.

Rows are written once, in the order they are given, into *parts*: Parquet files in a staging
folder (``<out>.partial/`` for a file output, ``<DIR>/_temporary/`` for a folder), each written
under a hidden temporary name and renamed when complete, with ``manifest.json`` listing the
complete parts and the inputs (``source_path`` values) they hold. A part is closed at the first
input boundary after `PART_ROWS` rows or `PART_BYTES` bytes, so a killed run loses at most the
part it was writing; ``resume=True`` keeps the manifest's parts and reports their inputs through
`ResidueTableWriter.done` so the caller skips them. Part boundaries depend only on the rows, so a
resumed run writes the same parts as an uninterrupted one.

`commit` publishes the result:

* a ``.parquet`` file: the single part is renamed to the output (no copy); several parts (a run
  of more than PART_ROWS rows, or a resume adding to an existing output) are merged in input order
  into a temporary file that is then renamed;
* a folder: parts are renamed into it as ``part-NNNNNN.parquet`` (one schema, the same file
  metadata), then ``_holoprot_manifest.json`` and the ``_SUCCESS`` marker are written. pyarrow,
  pandas, polars, DuckDB and Spark read the folder as one table (they skip names starting with
  ``_`` or ``.``).

Either way nothing appears at the final path before the commit. Row groups hold exactly
`row_group_rows(schema)` rows (the last one fewer), so the bytes of a file depend only on its rows.

Names read back from files are trusted no further than the folder they name: a manifest's part
names must be ``part-NNNNNN.parquet`` (`PART_NAME`), and a dataset folder or staging folder that
is a symbolic link (or not a folder) is refused, so nothing outside the output and its staging
folder is ever read, renamed or deleted, whatever a manifest or a planted link says.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from holoprot._util.atomic import temporary_file, write_json_atomic
from holoprot.errors import HoloprotError

#: Codec, encoding and row-group size, chosen by measurement on Zernike coefficients
#: (benchmarks/bench_output.py, benchmarks/RESULTS.md "Output format"): vector values are
#: byte-stream-split (no dictionary) and every column zstd level 1 compressed: 20 % smaller than
#: pyarrow's default (dictionary + snappy) at the same write time; ≈ 16 MiB row groups.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
ROW_GROUP_BYTES = 16 << 20
#: A part is closed at the first input boundary past either bound (about 10 s of `holoprot
#: zernike` or 45 s of `holoprot embed` on 2 CPU cores).
PART_ROWS = 65536
PART_BYTES = 256 << 20

STAGING_SUFFIX = ".partial"  # file output: <out>.partial/
STAGING_DIR = "_temporary"  # folder output: <DIR>/_temporary/
MANIFEST = "manifest.json"  # inside a staging folder
DATASET_MANIFEST = "_holoprot_manifest.json"  # inside a committed dataset folder
SUCCESS = "_SUCCESS"
_FORMAT = "holoprot-parts-1"
#: The name of every part the writer makes (`_part_name`); a manifest naming anything else is
#: refused, so a listed name can never leave its folder.
PART_NAME = re.compile(r"part-\d{6}\.parquet")
#: Temporary names a killed run may leave in a staging folder: a part being written, the manifest
#: being replaced, a file output being merged (``.part-000003.parquet.<random>.tmp``,
#: ``.manifest.json.<random>.tmp``, ``.merged.parquet.<random>.tmp``; also the fixed names of
#: earlier versions, ``.part-000003.parquet.tmp`` and ``.manifest.json.tmp-PID``).
_LEFTOVER = re.compile(r"\.(part-\d{6}\.parquet|manifest\.json|merged\.parquet)\..+")
#: ... and in a dataset folder: its manifest being replaced.
_DATASET_LEFTOVER = re.compile(r"\._holoprot_manifest\.json\..+")


def _part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


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


def is_dataset_output(path: str | os.PathLike) -> bool:
    """Whether an output path names a dataset folder: an existing folder, or a name without a
    suffix (``out/``, ``residues``); ``residues.parquet`` names a single file."""
    path = Path(path)
    return path.is_dir() or path.suffix == ""


def dataset_files(folder: str | os.PathLike) -> list[Path]:
    """The part files of a committed dataset folder, in row order."""
    folder = Path(folder)
    manifest = _read_manifest(folder / DATASET_MANIFEST, "cannot read the dataset")
    if manifest is not None:
        return [folder / p.file for p in manifest]
    return sorted(folder.glob("part-*.parquet"))


def _vector_fields(schema: pa.Schema) -> list[pa.Field]:
    return [f for f in schema if pa.types.is_fixed_size_list(f.type)]


def write_options(schema: pa.Schema) -> dict[str, object]:
    """Keyword arguments of every `pyarrow.parquet.ParquetWriter` holoprot opens."""
    vectors = {f.name for f in _vector_fields(schema)}
    return {
        "compression": COMPRESSION,
        "compression_level": COMPRESSION_LEVEL,
        "use_dictionary": [f.name for f in schema if f.name not in vectors],
        "use_byte_stream_split": [f"{name}.list.element" for name in sorted(vectors)],
    }


def row_group_rows(schema: pa.Schema) -> int:
    """Rows per row group: a power of two near ROW_GROUP_BYTES of vector values, 1024 … 65536
    (2048 for 1708 float32 coefficients, 16384 for 128 float32 latents)."""
    vectors = _vector_fields(schema)
    width = 64 + sum(f.type.list_size * f.type.value_type.byte_width for f in vectors)
    rows = 1 << max(0, (ROW_GROUP_BYTES // width).bit_length() - 1)
    return min(65536, max(1024, rows))


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


class RowGroupWriter:
    """A Parquet file written in row groups of exactly `rows` rows (the last one fewer),
    whatever the sizes of the tables given, so the bytes depend only on the rows."""

    def __init__(self, path: Path, schema: pa.Schema, rows: int | None = None) -> None:
        self.rows = row_group_rows(schema) if rows is None else rows
        self._schema = schema
        self._writer = pq.ParquetWriter(path, schema, **write_options(schema))
        self._pending: list[pa.Table] = []
        self._count = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._count += table.num_rows
        while self._count >= self.rows:
            self._emit(self.rows)

    def _emit(self, n: int) -> None:
        rows = pa.concat_tables(self._pending)
        group = rows.slice(0, n).combine_chunks().cast(self._schema)
        self._writer.write_table(group, row_group_size=n)
        rest = rows.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._count = rest.num_rows

    def close(self) -> None:
        if self._count:
            self._emit(self._count)
        self._writer.close()


class ResidueTableWriter:
    """Residue tables → one Parquet file or a dataset folder, rows in the order written.

    Args:
        path: the output: a ``.parquet`` file, or a folder (`is_dataset_output`).
        schema: columns of every table written; `metadata` is attached to it.
        metadata: file-level metadata (`holoprot.io.tables.file_metadata`).
        resume: keep the rows of inputs already written (complete parts of a killed run, an
            existing output) and list them in `done`; otherwise start afresh (an existing output
            is replaced at `commit`).
        part_rows, part_bytes: bounds of a part (see the module docstring).
        row_group_rows: rows per Parquet row group (default `row_group_rows(schema)`).

    Each `write` takes the complete rows of one or more inputs (the ``source_path`` column says
    which); `commit` publishes them. API users writing many tables to a folder can use
    `write_tables`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        metadata: dict[bytes, bytes],
        *,
        resume: bool = False,
        part_rows: int = PART_ROWS,
        part_bytes: int = PART_BYTES,
        row_group_rows: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.is_dataset = is_dataset_output(self.path)
        self.schema = schema.with_metadata(metadata)
        self.part_rows, self.part_bytes, self.row_group_rows = part_rows, part_bytes, row_group_rows
        if self.is_dataset:
            self.staging = self.path / STAGING_DIR
        else:
            self.staging = self.path.with_name(self.path.name + STAGING_SUFFIX)
        if not self.path.parent.is_dir():
            raise HoloprotError(f"{self.path}: output folder does not exist")
        self._check_links()
        self._committed: list[_Part] = []  # parts of an existing dataset folder
        self._existing: list[tuple[str, int]] = []  # sources of an existing output file
        self._parts: list[_Part] = []  # complete parts in the staging folder
        self._open: RowGroupWriter | None = None
        self._open_part: _Part | None = None
        self._open_tmp: Path | None = None
        self._open_bytes = 0
        if self.is_dataset:
            self._check_folder()
        if resume:
            self._adopt()
        elif self.staging.exists():
            shutil.rmtree(self.staging)

    # ---- what is there already ---------------------------------------------------------------
    @property
    def done(self) -> set[str]:
        """Source paths whose rows are already stored."""
        stored = [*self._existing]
        for part in (*self._committed, *self._parts):
            stored.extend(part.sources)
        if self._open_part is not None:
            stored.extend(self._open_part.sources)
        return {s for s, _ in stored}

    def _check_links(self) -> None:
        """Refuse a dataset folder or staging folder that is a symbolic link (or a file)."""
        if self.is_dataset:
            check_real_folder(self.path, "the output folder")
        check_real_folder(self.staging, "the staging folder of an unfinished run")

    def _check_folder(self) -> None:
        if not self.path.exists():
            return
        ours = {STAGING_DIR, DATASET_MANIFEST, SUCCESS}
        strangers = [
            p.name
            for p in self.path.iterdir()
            if p.name not in ours
            and not (PART_NAME.fullmatch(p.name) and _is_file(p))
            and not (_DATASET_LEFTOVER.fullmatch(p.name) and _is_file(p, links=True))
        ]
        if strangers:
            raise HoloprotError(
                f"{self.path}: folder holds files that are not a holoprot dataset"
                f" ({', '.join(sorted(strangers)[:3])}); choose a new or empty folder"
            )

    def _adopt(self) -> None:
        if self.is_dataset:
            self._committed = _read_manifest(self.path / DATASET_MANIFEST) or []
            for part in self._committed:
                self._check_part(self.path / part.file)
        elif self.path.exists():
            self._check_schema(self.path)
            table = pq.read_table(self.path, columns=["source_path"])
            self._existing = _source_runs(table)
        staged = _read_manifest(self.staging / MANIFEST) or []
        self._parts = [part for part in staged if not self._published(part)]
        for part in self._parts:
            self._check_part(self._part_path(part))
        if self.staging.exists():  # what a killed run left beyond its manifest
            self._remove_leftovers(listed={p.file for p in staged} | {MANIFEST})

    def _published(self, part: _Part) -> bool:
        """Whether a staged part was already published by a commit that was then interrupted
        (its rows are in the output, so the part is dropped); HoloprotError when the manifests
        disagree about it."""
        if os.path.lexists(self.staging / part.file):
            if part.file in {p.file for p in self._committed}:
                raise HoloprotError(
                    f"{self.staging / part.file}: cannot resume, the dataset already holds a part"
                    " of that name (left by a run replacing the dataset: rerun with --overwrite)"
                )
            return False
        if self.is_dataset:
            committed = {p.file: p for p in self._committed}
            if part.file not in committed:
                return False  # renamed into the folder, the dataset manifest not yet written
            if committed[part.file].sources != part.sources:
                raise HoloprotError(
                    f"{self.path / DATASET_MANIFEST}: cannot resume, {part.file} holds other rows"
                    f" than {self.staging / MANIFEST} says"
                )
            return True
        existing = set(dict(self._existing))
        if not self.path.exists() or not {s for s, _ in part.sources} <= existing:
            raise HoloprotError(
                f"{self.staging / part.file}: cannot resume, the part is missing (delete"
                f" {self.staging} and rerun without --resume)"
            )
        return True  # the single part renamed onto the output, the staging folder not yet gone

    def _remove_leftovers(self, listed: set[str]) -> None:
        """Delete the files a killed run left in the staging folder beyond its manifest (parts it
        did not record, temporary files); anything else there is refused, not deleted."""
        strays, strangers = [], []
        for entry in self.staging.iterdir():
            if entry.name in listed:
                continue
            ours = PART_NAME.fullmatch(entry.name) or _LEFTOVER.fullmatch(entry.name)
            (strays if ours and _is_file(entry, links=True) else strangers).append(entry.name)
        if strangers:
            raise HoloprotError(
                f"{self.staging}: holds files holoprot did not write"
                f" ({', '.join(sorted(strangers)[:3])}); move them away to resume"
            )
        for name in strays:
            (self.staging / name).unlink()

    def _part_path(self, part: _Part) -> Path:
        staged = self.staging / part.file
        if self.is_dataset and not os.path.lexists(staged):  # moved by an interrupted commit
            return self.path / part.file
        return staged

    def _check_part(self, file: Path) -> None:
        """A part to keep must be a regular file (not a link to a file elsewhere) of this run's
        columns and settings."""
        try:
            regular = _is_file(file)
        except FileNotFoundError:
            regular = True  # reported by _check_schema
        if not regular:
            raise HoloprotError(f"{file}: cannot resume, the part is not a regular file")
        self._check_schema(file)

    def _check_schema(self, file: Path) -> None:
        try:
            existing = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            raise HoloprotError(f"{file}: cannot resume from it ({exc})") from exc
        if existing.remove_metadata() != self.schema.remove_metadata():
            raise HoloprotError(f"{file}: cannot resume, its columns differ from this run's")
        if existing.metadata != self.schema.metadata:
            raise HoloprotError(
                f"{file}: cannot resume, it was made with other settings or weights"
            )

    # ---- writing ---------------------------------------------------------------------------
    def write(self, table: pa.Table) -> None:
        """Add the rows of one or more complete inputs."""
        if table.num_rows == 0:
            return
        if self._open is None:
            self._check_links()
            self.staging.mkdir(parents=True, exist_ok=True)
            index = len(self._committed) + len(self._parts)
            self._open_part = _Part(_part_name(index))
            self._open_tmp = temporary_file(self.staging, f".{self._open_part.file}.")
            self._open = RowGroupWriter(self._open_tmp, self.schema, self.row_group_rows)
            self._open_bytes = 0
        assert self._open_part is not None
        self._open.write(table)
        for source, n in _source_runs(table):
            runs = self._open_part.sources
            if runs and runs[-1][0] == source:
                runs[-1] = (source, runs[-1][1] + n)
            else:
                runs.append((source, n))
        self._open_bytes += table.nbytes
        if self._open_part.rows >= self.part_rows or self._open_bytes >= self.part_bytes:
            self._close_part()

    def _close_part(self) -> None:
        if self._open is None or self._open_part is None or self._open_tmp is None:
            return
        self._open.close()
        os.replace(self._open_tmp, self.staging / self._open_part.file)
        self._parts.append(self._open_part)
        _write_manifest(self.staging / MANIFEST, self._parts)
        self._open, self._open_part, self._open_tmp = None, None, None

    # ---- publishing ------------------------------------------------------------------------
    def commit(self, order: Sequence[str] | None = None) -> int:
        """Publish the rows written (and adopted); returns the rows in the output.

        For a file output, the rows of the sources in `order` (default: as stored) in that
        order, others dropped. A folder keeps every stored part, in the order written.
        """
        self._close_part()
        self._check_links()
        rows = self._commit_dataset() if self.is_dataset else self._commit_file(order)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        return rows

    def _commit_dataset(self) -> int:
        parts = [*self._committed, *self._parts]
        self.path.mkdir(exist_ok=True)
        (self.path / SUCCESS).unlink(missing_ok=True)
        keep = {p.file for p in parts}
        for old in self.path.iterdir():
            if (PART_NAME.fullmatch(old.name) and old.name not in keep) or (
                _DATASET_LEFTOVER.fullmatch(old.name) and _is_file(old, links=True)
            ):
                old.unlink()
        for part in self._parts:
            staged = self.staging / part.file
            if os.path.lexists(staged):
                os.replace(staged, self.path / part.file)
        if not parts:  # an empty run still leaves a readable dataset with the schema
            empty = _Part(_part_name(0))
            RowGroupWriter(self.path / empty.file, self.schema).close()
            parts = [empty]
        _write_manifest(self.path / DATASET_MANIFEST, parts)
        (self.path / SUCCESS).touch()
        return sum(p.rows for p in parts)

    def _commit_file(self, order: Sequence[str] | None) -> int:
        # where each source's rows are: (file, first row, rows)
        where: dict[str, tuple[Path, int, int]] = {}
        start = 0
        for source, n in self._existing:
            where.setdefault(source, (self.path, start, n))
            start += n
        for part in self._parts:
            start = 0
            for source, n in part.sources:
                where[source] = (self.staging / part.file, start, n)
                start += n
        if order is None:
            order = [s for s, _ in self._existing] + [s for p in self._parts for s, _ in p.sources]
        wanted = [s for s in dict.fromkeys(order) if s in where]
        if not self._existing and len(self._parts) == 1:
            part = self._parts[0]
            if wanted == [s for s, _ in part.sources]:  # already the output: no copy
                os.replace(self.staging / part.file, self.path)
                return part.rows
        pieces = [where[s] for s in wanted]
        # merged in the staging folder, so that a run killed while merging leaves nothing
        # beside the output (a resume deletes it with the other leftovers)
        self.staging.mkdir(exist_ok=True)
        tmp = temporary_file(self.staging, ".merged.parquet.")
        try:
            writer = RowGroupWriter(tmp, self.schema, self.row_group_rows)
            for table in _read_pieces(pieces):
                writer.write(table)
            writer.close()
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        return sum(n for _, _, n in pieces)


def _is_file(path: Path, links: bool = False) -> bool:
    """Whether `path` is a regular file (or, with `links`, a symbolic link, which deleting
    removes without touching its target)."""
    mode = os.lstat(path).st_mode
    return stat.S_ISREG(mode) or (links and stat.S_ISLNK(mode))


def _read_pieces(pieces: Iterable[tuple[Path, int, int]]) -> Iterable[pa.Table]:
    """The rows (file, first row, rows) of each piece, read a row group at a time."""
    files: dict[Path, tuple[pq.ParquetFile, list[int]]] = {}
    cached: tuple[Path | None, int, pa.Table | None] = (None, -1, None)
    for file, start, n in pieces:
        if file not in files:
            pf = pq.ParquetFile(file)
            sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
            files[file] = (pf, [0, *itertools.accumulate(sizes)])
        pf, bounds = files[file]
        end = start + n
        group = bisect.bisect_right(bounds, start) - 1
        while start < end:
            if cached[:2] != (file, group):
                cached = (file, group, pf.read_row_group(group))
            lo, hi = bounds[group], bounds[group + 1]
            take = min(end, hi) - start
            yield cached[2].slice(start - lo, take)
            start += take
            group += 1


def write_tables(
    tables: Iterable[pa.Table],
    path: str | os.PathLike,
    schema: pa.Schema,
    *,
    resume: bool = False,
) -> int:
    """Write residue tables (each the complete rows of one or more inputs, in order) to a
    ``.parquet`` file or a dataset folder with `schema` and its metadata; returns the rows.

    With `resume`, inputs already stored are skipped (their tables are not written again).
    """
    writer = ResidueTableWriter(path, schema, schema.metadata or {}, resume=resume)
    done = writer.done
    for table in tables:
        if done and set(table.column("source_path").unique().to_pylist()) <= done:
            continue
        writer.write(table)
    return writer.commit()


__all__ = [
    "PART_NAME",
    "ResidueTableWriter",
    "RowGroupWriter",
    "check_real_folder",
    "dataset_files",
    "is_dataset_output",
    "row_group_rows",
    "write_options",
    "write_tables",
]
