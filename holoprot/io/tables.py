"""Per-residue tables: identity columns, vector columns, file metadata (see `holoprot.io.output`
for writing them to disk)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from holoprot import __version__

if TYPE_CHECKING:
    from holoprot.io.structure import Structure
    from holoprot.zernike.neighborhoods import Neighborhoods

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


#: Value types a vector column may have (float16 only for `holoprot zernike --dtype float16`).
VECTOR_TYPES = {"float32": pa.float32(), "float16": pa.float16()}

#: Largest magnitude a float16 holds (beyond it values would become infinite).
FLOAT16_MAX = 65504.0


def vector_field(name: str, dim: int, dtype: str = "float32") -> pa.Field:
    """A column of `dtype` ('float32' or 'float16') vectors of fixed length `dim`."""
    return pa.field(name, pa.list_(VECTOR_TYPES[dtype], dim))


def vector_array(values: np.ndarray, dtype: str = "float32") -> pa.FixedSizeListArray:
    """(n, d) array → Arrow fixed_size_list<dtype>[d] array without copying row by row.

    float16 rounds to nearest: |error| ≤ 2⁻¹¹·|x| (4.9e-4 relative) for |x| ≥ 2⁻¹⁴ and ≤ 2⁻²⁵
    (3.0e-8) below; ValueError for values beyond ±FLOAT16_MAX.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "float16":
        if values.size and np.abs(values).max() > FLOAT16_MAX:
            raise ValueError(f"values up to {np.abs(values).max():.3g} exceed float16's range")
        values = values.astype(np.float16)
    return pa.FixedSizeListArray.from_arrays(numeric_array(values.reshape(-1)), values.shape[1])


def numeric_array(values: np.ndarray) -> pa.Array:
    """(n,) NumPy numbers or bools → Arrow array of the same type, without ``pa.array``.

    ``pa.array`` imports pandas on first use (≈ 0.2 s of every command's start-up) to ask whether
    the input is a pandas object; these builders hand NumPy's buffer to Arrow directly instead
    (zero-copy for numbers; bools are bit-packed as Arrow stores them).
    """
    values = np.ascontiguousarray(values)
    if values.ndim != 1:
        raise ValueError(f"expected a 1-d array, got shape {values.shape}")
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    arrow_type = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def string_array(values: Sequence[str] | np.ndarray) -> pa.StringArray:
    """Strings → Arrow string array (no nulls), without ``pa.array`` (see `numeric_array`)."""
    encoded = [str(v).encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return _utf8_array(offsets, b"".join(encoded))


def repeated_string(value: str, n: int) -> pa.StringArray:
    """`value` n times as an Arrow string array (see `string_array`)."""
    data = value.encode()
    return _utf8_array(np.arange(n + 1, dtype=np.int64) * len(data), data * n)


def _utf8_array(offsets: np.ndarray, data: bytes) -> pa.StringArray:
    """Arrow string array from (n + 1,) int64 byte offsets into UTF-8 `data`."""
    if offsets[-1] >= 2**31:
        raise ValueError("string column exceeds 2 GiB")
    return pa.StringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
    )


def identity_columns(structure: Structure, nbh: Neighborhoods) -> dict[str, pa.Array]:
    """Identity of each neighbourhood's centre residue, one row per neighbourhood."""
    res = nbh.residue_index
    n = len(res)
    return {
        "structure_id": repeated_string(structure.id, n),
        "source_path": repeated_string(str(structure.path), n),
        "model": numeric_array(np.full(n, structure.model, np.int32)),
        "chain": string_array(structure.chain[res]),
        "residue_number": numeric_array(structure.seq_num[res].astype(np.int32)),
        "insertion_code": string_array(structure.icode[res]),
        "residue_name": string_array(structure.res_name[res]),
        "nonstandard": numeric_array(~structure.is_standard[res]),
        "atom_count": numeric_array(nbh.n_atoms.astype(np.int32)),
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
    """The holoprot key-value metadata of a Parquet file or dataset folder, JSON-decoded."""
    from holoprot.io.output import dataset_files

    path = Path(path)
    files = dataset_files(path) if path.is_dir() else [path]
    raw = (pq.read_schema(files[0]).metadata if files else None) or {}
    return {k.decode(): json.loads(v) for k, v in raw.items() if not k.startswith(b"ARROW")}
