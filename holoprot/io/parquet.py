"""How holoprot writes Parquet: codec, encodings and row-group size, and a writer whose row groups
hold exactly `row_group_rows(schema)` rows (the last one fewer), so that the bytes of a file depend
only on its rows.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Codec, encoding and row-group size, chosen by measurement on Zernike coefficients
#: (benchmarks/bench_output.py, benchmarks/RESULTS.md "Output format"): vector values are
#: byte-stream-split (no dictionary) and every column zstd level 1 compressed: 20 % smaller than
#: pyarrow's default (dictionary + snappy) at the same write time; ≈ 16 MiB row groups.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
ROW_GROUP_BYTES = 16 << 20


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

    def abort(self) -> None:
        """Give up a file whose writing failed: close it without its pending rows, ignoring a
        second failure (the caller deletes the file)."""
        self._pending, self._count = [], 0
        with suppress(OSError, pa.ArrowException):
            self._writer.close()


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


__all__ = ["RowGroupWriter", "row_group_rows", "write_options"]
