"""Writing residue tables to disk: one Parquet file or a Parquet dataset folder, in one pass,
atomically and resumably.

Rows are written once, in the order they are given, into parts: Parquet files in a staging folder
listed by its manifest and closed at input boundaries (`holoprot.io.staging`), so a killed run
loses at most the part it was writing; ``resume=True`` keeps the manifest's parts and reports
their inputs through `ResidueTableWriter.done` so the caller skips them. An input may come in
several writes (a giant file's chunks, ``last=False`` but for its last rows): its rows stream into
the open part's row groups, and the part stays open until the input's last rows, so a kill in the
middle of an input leaves none of its rows in a complete part.

`commit` publishes the result:

* a ``.parquet`` file (`FileOutput`): the single part is renamed to the output (no copy); several
  parts (a run of more than PART_ROWS rows, or a resume adding to an existing output) are merged
  in input order into a temporary file that is then renamed;
* a folder (`DatasetOutput`): parts are renamed into it as ``part-NNNNNN.parquet`` (one schema,
  the same file metadata), then ``_holoprot_manifest.json`` and the ``_SUCCESS`` marker are
  written. pyarrow, pandas, polars, DuckDB and Spark read the folder as one table (they skip names
  starting with ``_`` or ``.``).

Either way nothing appears at the final path before the commit. Row groups hold exactly
`row_group_rows(schema)` rows (the last one fewer; `holoprot.io.parquet`), so the bytes of a file
depend only on its rows.

A write that fails for want of space (a full disk, a file-size limit, a full quota), while
writing the parts or while committing, is a HoloprotError naming the output, where the finished
inputs' rows are kept and ``--resume``: the complete parts and their manifest stay, the part
being written is deleted (a resume would delete it).

Names read back from files are trusted no further than the folder they name: a manifest's part
names must be ``part-NNNNNN.parquet``, and a dataset folder or staging folder that is a symbolic
link (or not a folder) is refused, so nothing outside the output and its staging folder is ever
read, renamed or deleted, whatever a manifest or a planted link says.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from holoprot._util.atomic import temporary_file
from holoprot.errors import HoloprotError
from holoprot.io import staging as _staging
from holoprot.io.parquet import RowGroupWriter, _read_pieces
from holoprot.io.staging import (
    MANIFEST,
    PART_NAME,
    STAGING_DIR,
    STAGING_SUFFIX,
    _is_file,
    _Part,
    _part_name,
    _read_manifest,
    _source_runs,
    _write_manifest,
    check_part,
    check_real_folder,
    check_schema,
    no_space_reason,
    remove_leftovers,
)

DATASET_MANIFEST = "_holoprot_manifest.json"  # inside a committed dataset folder
SUCCESS = "_SUCCESS"
#: A dataset folder's manifest being replaced, as a killed commit may leave it.
_DATASET_LEFTOVER = re.compile(r"\._holoprot_manifest\.json\..+")


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


def _check_dataset_folder(path: Path) -> None:
    """Refuse an existing folder holding anything but a holoprot dataset and its staging folder."""
    if not path.exists():
        return
    ours = {STAGING_DIR, DATASET_MANIFEST, SUCCESS}
    strangers = [
        p.name
        for p in path.iterdir()
        if p.name not in ours
        and not (PART_NAME.fullmatch(p.name) and _is_file(p))
        and not (_DATASET_LEFTOVER.fullmatch(p.name) and _is_file(p, links=True))
    ]
    if strangers:
        raise HoloprotError(
            f"{path}: folder holds files that are not a holoprot dataset"
            f" ({', '.join(sorted(strangers)[:3])}); choose a new or empty folder"
        )


class DatasetOutput:
    """A dataset folder: the parts it holds, and the commit that renames staged parts in beside
    them."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self.staging = path / STAGING_DIR
        self.committed: list[_Part] = []  # parts of an existing dataset folder

    @property
    def stored(self) -> list[tuple[str, int]]:
        """(source_path, rows) already in the output."""
        return [source for part in self.committed for source in part.sources]

    @property
    def part_count(self) -> int:
        """Parts the output holds; new parts are numbered after them."""
        return len(self.committed)

    def adopt(self) -> None:
        """Keep the parts of an existing dataset (checked against this run's schema)."""
        self.committed = _read_manifest(self.path / DATASET_MANIFEST) or []
        for part in self.committed:
            check_part(self.path / part.file, self.schema)

    def published(self, part: _Part) -> bool:
        """Whether a staged part was already published by a commit that was then interrupted
        (its rows are in the output, so the part is dropped); HoloprotError when the manifests
        disagree about it."""
        committed = {p.file: p for p in self.committed}
        if os.path.lexists(self.staging / part.file):
            if part.file in committed:
                raise HoloprotError(
                    f"{self.staging / part.file}: cannot resume, the dataset already holds a part"
                    " of that name (left by a run replacing the dataset: rerun with --overwrite)"
                )
            return False
        if part.file not in committed:
            return False  # renamed into the folder, the dataset manifest not yet written
        if committed[part.file].sources != part.sources:
            raise HoloprotError(
                f"{self.path / DATASET_MANIFEST}: cannot resume, {part.file} holds other rows"
                f" than {self.staging / MANIFEST} says"
            )
        return True

    def part_path(self, part: _Part) -> Path:
        staged = self.staging / part.file
        if not os.path.lexists(staged):  # moved by an interrupted commit
            return self.path / part.file
        return staged

    def commit(self, staged: list[_Part], order: Sequence[str] | None) -> int:
        """Rename the staged parts into the folder (`order` is not used: a folder keeps every
        part, in the order written), then write its manifest and ``_SUCCESS``."""
        parts = [*self.committed, *staged]
        self.path.mkdir(exist_ok=True)
        (self.path / SUCCESS).unlink(missing_ok=True)
        keep = {p.file for p in parts}
        for old in self.path.iterdir():
            if (PART_NAME.fullmatch(old.name) and old.name not in keep) or (
                _DATASET_LEFTOVER.fullmatch(old.name) and _is_file(old, links=True)
            ):
                old.unlink()
        for part in staged:
            file = self.staging / part.file
            if os.path.lexists(file):
                os.replace(file, self.path / part.file)
        if not parts:  # an empty run still leaves a readable dataset with the schema
            empty = _Part(_part_name(0))
            RowGroupWriter(self.path / empty.file, self.schema).close()
            parts = [empty]
        _write_manifest(self.path / DATASET_MANIFEST, parts)
        (self.path / SUCCESS).touch()
        return sum(p.rows for p in parts)


class FileOutput:
    """A ``.parquet`` file: the rows it holds, and the commit that renames or merges staged parts
    onto it."""

    part_count = 0  # a file holds no parts

    def __init__(self, path: Path, schema: pa.Schema, row_group_rows: int | None) -> None:
        self.path, self.schema, self.row_group_rows = path, schema, row_group_rows
        self.staging = path.with_name(path.name + STAGING_SUFFIX)
        self.stored: list[tuple[str, int]] = []  # (source_path, rows) of an existing output

    def adopt(self) -> None:
        """Keep the rows of an existing output file (checked against this run's schema)."""
        if self.path.exists():
            check_schema(self.path, self.schema)
            table = pq.read_table(self.path, columns=["source_path"])
            self.stored = _source_runs(table)

    def published(self, part: _Part) -> bool:
        """Whether a staged part was already renamed onto the output by a commit that was then
        interrupted; HoloprotError when the part is missing."""
        if os.path.lexists(self.staging / part.file):
            return False
        existing = set(dict(self.stored))
        if not self.path.exists() or not {s for s, _ in part.sources} <= existing:
            raise HoloprotError(
                f"{self.staging / part.file}: cannot resume, the part is missing (delete"
                f" {self.staging} and rerun without --resume)"
            )
        return True  # the single part renamed onto the output, the staging folder not yet gone

    def part_path(self, part: _Part) -> Path:
        return self.staging / part.file

    def commit(self, staged: list[_Part], order: Sequence[str] | None) -> int:
        """Write the rows of the sources in `order` (default: as stored) in that order, others
        dropped: the single staged part renamed, or the rows merged into a new file."""
        # where each source's rows are: (file, first row, rows)
        where: dict[str, tuple[Path, int, int]] = {}
        start = 0
        for source, n in self.stored:
            where.setdefault(source, (self.path, start, n))
            start += n
        for part in staged:
            start = 0
            for source, n in part.sources:
                where[source] = (self.staging / part.file, start, n)
                start += n
        if order is None:
            order = [s for s, _ in self.stored] + [s for p in staged for s, _ in p.sources]
        wanted = [s for s in dict.fromkeys(order) if s in where]
        if not self.stored and len(staged) == 1:
            part = staged[0]
            if wanted == [s for s, _ in part.sources]:  # already the output: no copy
                os.replace(self.staging / part.file, self.path)
                return part.rows
        pieces = [where[s] for s in wanted]
        # merged in the staging folder, so that a run killed while merging leaves nothing
        # beside the output (a resume deletes it with the other leftovers)
        self.staging.mkdir(exist_ok=True)
        tmp = temporary_file(self.staging, ".merged.parquet.")
        writer: RowGroupWriter | None = None
        try:
            writer = RowGroupWriter(tmp, self.schema, self.row_group_rows)
            for table in _read_pieces(pieces):
                writer.write(table)
            writer.close()
            writer = None
            os.replace(tmp, self.path)
        finally:
            if writer is not None:
                writer.abort()
            tmp.unlink(missing_ok=True)
        return sum(n for _, _, n in pieces)


class ResidueTableWriter:
    """Residue tables → one Parquet file or a dataset folder, rows in the order written.

    Args:
        path: the output: a ``.parquet`` file, or a folder (`is_dataset_output`).
        schema: columns of every table written; `metadata` is attached to it.
        metadata: file-level metadata (`holoprot.io.tables.file_metadata`).
        resume: keep the rows of inputs already written (complete parts of a killed run, an
            existing output) and list them in `done`; otherwise start afresh (an existing output
            is replaced at `commit`).
        part_rows, part_bytes: bounds of a part (default `holoprot.io.staging.PART_ROWS` and
            `PART_BYTES`, read when the writer is made).
        row_group_rows: rows per Parquet row group (default `row_group_rows(schema)`).

    Each `write` takes the complete rows of one or more inputs (the ``source_path`` column says
    which), or with ``last=False`` the first rows of an input whose rest follows; `commit`
    publishes them. API users writing many tables to a folder can use `write_tables`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        metadata: dict[bytes, bytes],
        *,
        resume: bool = False,
        part_rows: int | None = None,
        part_bytes: int | None = None,
        row_group_rows: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.is_dataset = is_dataset_output(self.path)
        self.schema = schema.with_metadata(metadata)
        self.part_rows = _staging.PART_ROWS if part_rows is None else part_rows
        self.part_bytes = _staging.PART_BYTES if part_bytes is None else part_bytes
        self.row_group_rows = row_group_rows
        self._output: DatasetOutput | FileOutput
        if self.is_dataset:
            self._output = DatasetOutput(self.path, self.schema)
        else:
            self._output = FileOutput(self.path, self.schema, row_group_rows)
        self.staging = self._output.staging
        if not self.path.parent.is_dir():
            raise HoloprotError(f"{self.path}: output folder does not exist")
        self._check_links()
        self._parts: list[_Part] = []  # complete parts in the staging folder
        self._open: RowGroupWriter | None = None
        self._open_part: _Part | None = None
        self._open_tmp: Path | None = None
        self._open_bytes = 0
        self._inside_input = False  # the last write ended inside an input (last=False)
        if self.is_dataset:
            _check_dataset_folder(self.path)
        if resume:
            self._adopt()
        elif self.staging.exists():
            shutil.rmtree(self.staging)

    # ---- what is there already ---------------------------------------------------------------
    @property
    def done(self) -> set[str]:
        """Source paths whose rows are already stored."""
        stored = [*self._output.stored]
        for part in self._parts:
            stored.extend(part.sources)
        if self._open_part is not None:
            stored.extend(self._open_part.sources)
        return {s for s, _ in stored}

    def _check_links(self) -> None:
        """Refuse a dataset folder or staging folder that is a symbolic link (or a file)."""
        if self.is_dataset:
            check_real_folder(self.path, "the output folder")
        check_real_folder(self.staging, "the staging folder of an unfinished run")

    def _adopt(self) -> None:
        self._output.adopt()
        staged = _read_manifest(self.staging / MANIFEST) or []
        self._parts = [part for part in staged if not self._output.published(part)]
        for part in self._parts:
            check_part(self._output.part_path(part), self.schema)
        if self.staging.exists():  # what a killed run left beyond its manifest
            remove_leftovers(self.staging, listed={p.file for p in staged} | {MANIFEST})

    # ---- writing ---------------------------------------------------------------------------
    def write(self, table: pa.Table, *, last: bool = True) -> None:
        """Add the rows of one or more inputs, each complete but, with ``last=False``, the final
        one, whose next rows come in the next `write` (the part stays open until they have)."""
        self._inside_input = not last
        if table.num_rows == 0:
            return
        with self._no_space():
            self._write(table)

    def _write(self, table: pa.Table) -> None:
        if self._open is None:
            self._check_links()
            self.staging.mkdir(parents=True, exist_ok=True)
            index = self._output.part_count + len(self._parts)
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
        full = self._open_part.rows >= self.part_rows or self._open_bytes >= self.part_bytes
        if full and not self._inside_input:
            self._close_part()

    def _close_part(self) -> None:
        if self._open is None or self._open_part is None or self._open_tmp is None:
            return
        self._open.close()
        os.replace(self._open_tmp, self.staging / self._open_part.file)
        parts = [*self._parts, self._open_part]
        _write_manifest(self.staging / MANIFEST, parts)  # the part is kept once listed there
        self._parts = parts
        self._open, self._open_part, self._open_tmp = None, None, None

    def _discard_open_part(self) -> None:
        """Delete the part being written (a resume would delete it: its manifest does not list
        it), giving its space back now."""
        if self._open is not None:
            self._open.abort()
        if self._open_part is not None:
            (self.staging / self._open_part.file).unlink(missing_ok=True)  # renamed, not listed
        if self._open_tmp is not None:
            self._open_tmp.unlink(missing_ok=True)
        self._open, self._open_part, self._open_tmp = None, None, None

    @contextmanager
    def _no_space(self, publishing: bool = False) -> Iterator[None]:
        """Turn a write that fails for want of space into a HoloprotError naming the output,
        what is kept and `--resume`, after deleting the part being written."""
        try:
            yield
        except (OSError, pa.ArrowException) as exc:
            reason = no_space_reason(exc)
            if reason is None:
                raise
            with suppress(OSError):  # else a resume deletes it
                self._discard_open_part()
            raise HoloprotError(self._no_space_message(reason, publishing)) from exc

    def _no_space_message(self, reason: str, publishing: bool) -> str:
        sources = {s for s, _ in self._output.stored}
        sources.update(s for part in self._parts for s, _ in part.sources)
        n = len(sources)
        plural = "" if n == 1 else "s"
        # where the kept rows are: staged parts, and an existing output resumed onto (or, for a
        # folder whose commit failed, the parts already renamed into it)
        places = [str(self.staging)] if self._parts else []
        if self._output.stored or (publishing and self.is_dataset):
            places.append(str(self.path))
        where = " and ".join(places) or str(self.staging)
        if publishing:
            if self.is_dataset:
                step, room = "publishing its parts", ""
            else:
                step, room = "merging its parts into it", " (the merge needs as much again)"
            return (
                f"{self.path}: {reason} while {step}; the rows of all {n} input{plural} are kept in"
                f" {where}: free space{room}, then rerun with --resume to finish"
            )
        if not n:
            return (
                f"{self.path}: {reason} while writing, before any input was finished (no rows"
                f" kept in {self.staging}): free space, then rerun (--resume continues from there)"
            )
        return (
            f"{self.path}: {reason} while writing; the rows of {n} finished input{plural} are kept"
            f" in {where}: free space, then rerun with --resume to continue"
        )

    # ---- publishing ------------------------------------------------------------------------
    def commit(self, order: Sequence[str] | None = None) -> int:
        """Publish the rows written (and adopted); returns the rows in the output.

        For a file output, the rows of the sources in `order` (default: as stored) in that
        order, others dropped. A folder keeps every stored part, in the order written.
        """
        if self._inside_input:
            raise ValueError("commit inside an input: its last rows were not written")
        with self._no_space():
            self._close_part()
        self._check_links()
        with self._no_space(publishing=True):
            rows = self._output.commit(self._parts, order)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        return rows


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


# DATASET_MANIFEST, MANIFEST, STAGING_DIR, STAGING_SUFFIX and SUCCESS: the names of the files a
# run leaves, which the CLI, search and tests look up here.
__all__ = [
    "DATASET_MANIFEST",
    "MANIFEST",
    "STAGING_DIR",
    "STAGING_SUFFIX",
    "SUCCESS",
    "ResidueTableWriter",
    "dataset_files",
    "is_dataset_output",
    "write_tables",
]
