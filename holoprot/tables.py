"""Per-residue tables and their Parquet files: identity columns, vector columns, atomic writes.

A run's rows are first written as small complete part files in ``<out>.partial/`` (each part is
itself written to a temporary name and renamed), and only merged into ``<out>`` — again through a
temporary file and an atomic rename — when the run finishes. So ``<out>`` is never half-written,
and a killed run leaves parts that ``resume=True`` picks up: inputs already present (in the parts
or in an existing ``<out>``) are skipped, and the merged file lists rows in input order.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from holoprot import __version__
from holoprot.errors import HoloprotError
from holoprot.neighborhoods import Neighborhoods
from holoprot.structure import Structure

IDENTITY_SCHEMA = pa.schema(
    [
        ("structure_id", pa.string()),
        ("source_path", pa.string()),
        ("model", pa.int32()),
        ("chain", pa.string()),
        ("residue_number", pa.int32()),
        ("insertion_code", pa.string()),
        ("residue_name", pa.string()),
        ("nonstandard", pa.bool_()),
        ("atom_count", pa.int32()),
    ]
)


def vector_field(name: str, dim: int) -> pa.Field:
    """A column of float32 vectors of fixed length `dim`."""
    return pa.field(name, pa.list_(pa.float32(), dim))


def vector_array(values: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) array → Arrow fixed_size_list<float32>[d] array without copying row by row."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    flat = pa.array(values.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def identity_columns(structure: Structure, nbh: Neighborhoods) -> dict[str, pa.Array]:
    """Identity of each neighbourhood's centre residue, one row per neighbourhood."""
    res = nbh.residue_index
    n = len(res)
    return {
        "structure_id": pa.array([structure.id] * n, pa.string()),
        "source_path": pa.array([str(structure.path)] * n, pa.string()),
        "model": pa.array(np.full(n, structure.model, np.int32)),
        "chain": pa.array(structure.chain[res].astype(str), pa.string()),
        "residue_number": pa.array(structure.seq_num[res].astype(np.int32)),
        "insertion_code": pa.array(structure.icode[res].astype(str), pa.string()),
        "residue_name": pa.array(structure.res_name[res].astype(str), pa.string()),
        "nonstandard": pa.array(~structure.is_standard[res]),
        "atom_count": pa.array(nbh.n_atoms.astype(np.int32)),
    }


def residue_table(
    structure: Structure, nbh: Neighborhoods, vectors: dict[str, np.ndarray]
) -> pa.Table:
    """Identity columns plus named (n, d) float32 vector columns."""
    columns = identity_columns(structure, nbh)
    fields = list(IDENTITY_SCHEMA)
    for name, values in vectors.items():
        columns[name] = vector_array(values)
        fields.append(vector_field(name, values.shape[1]))
    return pa.Table.from_pydict(columns, schema=pa.schema(fields))


def file_metadata(extra: dict[str, object]) -> dict[bytes, bytes]:
    """Parquet key-value metadata: holoprot version plus `extra`, values JSON-encoded."""
    meta = {"holoprot_version": __version__, **extra}
    return {k.encode(): json.dumps(v).encode() for k, v in meta.items()}


def read_metadata(path: str | os.PathLike) -> dict[str, object]:
    """The holoprot key-value metadata of a Parquet file, JSON-decoded."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): json.loads(v) for k, v in raw.items() if not k.startswith(b"ARROW")}


def _atomic_write(path: Path, tables: Iterable[pa.Table], schema: pa.Schema) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table.cast(schema))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ResidueTableWriter:
    """Collects per-input tables and commits them as one Parquet file, atomically and resumably.

    Args:
        path: the output file.
        schema: columns of every table written (metadata is attached here).
        metadata: file-level metadata (see `file_metadata`).
        resume: keep rows of inputs already in `path` or in its leftover parts, and report them
            through `done` so the caller can skip them; otherwise start afresh.
        part_rows: rows buffered before a part file is flushed (bounds memory).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        metadata: dict[bytes, bytes],
        *,
        resume: bool = False,
        part_rows: int = 4096,
    ) -> None:
        self.path = Path(path)
        self.schema = schema.with_metadata(metadata)
        self.parts_dir = self.path.with_name(self.path.name + ".partial")
        self.part_rows = part_rows
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._sources: dict[str, Path] = {}  # source path -> file holding its rows
        if not self.path.parent.is_dir():
            raise HoloprotError(f"{self.path}: output folder does not exist")
        if resume:
            self._adopt_existing()
        elif self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)

    @property
    def done(self) -> set[str]:
        """Source paths whose rows are already stored."""
        return set(self._sources)

    def _adopt_existing(self) -> None:
        candidates = sorted(self.parts_dir.glob("part-*.parquet"))
        if self.path.exists():
            candidates.insert(0, self.path)
        for file in candidates:
            try:
                existing = pq.read_schema(file)
                sources = pq.read_table(file, columns=["source_path"]).column(0).unique()
            except (OSError, pa.ArrowException) as exc:
                raise HoloprotError(f"{file}: cannot resume from it ({exc})") from exc
            if existing.remove_metadata() != self.schema.remove_metadata():
                raise HoloprotError(f"{file}: cannot resume, its columns differ from this run's")
            if existing.metadata != self.schema.metadata:
                raise HoloprotError(
                    f"{file}: cannot resume, it was made with other settings or weights"
                )
            for s in sources.to_pylist():
                self._sources.setdefault(s, file)

    def write(self, table: pa.Table) -> None:
        """Add the rows of one or more complete inputs."""
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.part_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        self.parts_dir.mkdir(exist_ok=True)
        n_parts = len(list(self.parts_dir.glob("part-*.parquet")))
        part = self.parts_dir / f"part-{n_parts:06d}.parquet"
        _atomic_write(part, self._buffer, self.schema)
        for table in self._buffer:
            for s in table.column("source_path").unique().to_pylist():
                self._sources[s] = part
        self._buffer, self._buffered = [], 0

    def commit(self, order: Sequence[str]) -> int:
        """Write `path` with the rows of the sources in `order` (others dropped); returns rows."""
        self._flush()
        rows = 0
        loaded: tuple[Path | None, pa.Table | None] = (None, None)

        def tables() -> Iterable[pa.Table]:
            nonlocal rows, loaded
            for source in order:
                file = self._sources.get(source)
                if file is None:
                    continue
                if loaded[0] != file:
                    loaded = (file, pq.read_table(file))
                table = loaded[1]
                mask = pc.equal(table.column("source_path"), source)
                part = table.filter(mask)
                rows += part.num_rows
                yield part

        _atomic_write(self.path, tables(), self.schema)
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)
        return rows
