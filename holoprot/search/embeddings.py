"""Reading the `latent` column and identity columns of holoprot embedding Parquet files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from holoprot.errors import HoloprotError, InputError
from holoprot.io.output import DATASET_MANIFEST, STAGING_DIR, STAGING_SUFFIX, dataset_files
from holoprot.io.tables import IDENTITY_SCHEMA

#: Identity columns an index keeps for each row (the atom count is not needed to name a residue).
HIT_COLUMNS = [f.name for f in IDENTITY_SCHEMA if f.name != "atom_count"]


@dataclass(frozen=True)
class Embeddings:
    """Rows of one or more embedding files.

    Attributes:
        identity: the identity columns (`HIT_COLUMNS`), one row per residue.
        latent: (n, d) float32 latent vectors, same row order.
        weights_name, weights_sha256: the weights that made them.
        frame: (n, 3, 3) float32 learned frames (rows x̂, ŷ, ẑ; `holoprot embed --frames`), or
            None when any file lacks the ``frame`` column.
    """

    identity: pa.Table
    latent: np.ndarray
    weights_name: str
    weights_sha256: str
    frame: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.latent)


def latent_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed_size_list<float32>[d] column → (n, d) float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if not pa.types.is_fixed_size_list(column.type):
        raise ValueError(f"expected a fixed-size list column, got {column.type}")
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(len(column), dim), dtype=np.float32)


def _parquet_files(item: Path) -> list[Path]:
    if item.is_dir():
        files = _folder_files(item)
        if not files:
            raise InputError(item, "directory holds no .parquet file")
        return files
    if not item.exists():
        raise InputError(item, "no such file or directory")
    return [item]


def _folder_files(folder: Path) -> list[Path]:
    """The .parquet files of a folder and its subfolders, in path order, as Parquet readers see
    them: a committed holoprot dataset folder gives the parts its manifest lists (not the staging
    parts a killed run left in ``_temporary/``; with no manifest, such a folder is refused), and
    names starting with ``_`` or ``.`` (staging folders, temporary files) or ending in
    ``.partial`` (a file output's unfinished rows) are skipped, as are links to folders."""
    if (folder / DATASET_MANIFEST).is_file():
        return dataset_files(folder)
    if os.path.lexists(folder / STAGING_DIR):  # parts of a run that has not committed any
        raise InputError(
            folder, f"holds an unfinished run ({STAGING_DIR}/) but no dataset; finish it first"
        )
    files: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(("_", ".")) or entry.name.endswith(STAGING_SUFFIX):
            continue
        if entry.is_dir():
            if not entry.is_symlink():
                files.extend(_folder_files(entry))
        elif entry.suffix == ".parquet" and entry.is_file():
            files.append(entry)
    return files


def _weights_of(path: Path, schema: pa.Schema) -> tuple[str, str]:
    meta = schema.metadata or {}
    try:
        sha = json.loads(meta[b"weights_sha256"])
        name = json.loads(meta.get(b"weights_name", b'""'))
    except (KeyError, ValueError):
        raise InputError(
            path, "no weights sha256 in its metadata (not written by `holoprot embed`?)"
        ) from None
    return str(name), str(sha)


def read_embeddings(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
) -> Embeddings:
    """Read embedding Parquet files (or folders of them, e.g. a dataset) made by `holoprot embed`.

    All files must hold a `latent` column and come from the same weights (sha256 in the file
    metadata); otherwise InputError names the file at fault. Frames are read when every file has
    a ``frame`` column (else `Embeddings.frame` is None).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = [f for item in items for f in _parquet_files(Path(item))]
    if not files:
        raise HoloprotError("no embedding file given")
    identities, latents, frames = [], [], []
    with_frames = True
    weights: tuple[str, str] | None = None
    first: Path | None = None
    for file in files:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(file, f"not a readable Parquet file ({exc})") from None
        missing = [c for c in ["latent", *HIT_COLUMNS] if c not in schema.names]
        if missing:
            raise InputError(file, f"no {', '.join(missing)} column (not a holoprot embedding?)")
        these = _weights_of(file, schema)
        if weights is None:
            weights, first = these, file
        elif these[1] != weights[1]:
            raise InputError(
                file,
                f"made with weights {these[0]} (sha256 {these[1][:12]}…), but {first} with"
                f" {weights[0]} (sha256 {weights[1][:12]}…); an index holds one model's latents",
            )
        with_frames = with_frames and "frame" in schema.names
        columns = [*HIT_COLUMNS, "latent", *(["frame"] if with_frames else [])]
        try:
            table = pq.read_table(file, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(file, f"cannot read it ({exc})") from None
        latent = latent_matrix(table.column("latent"))
        if not np.isfinite(latent).all():
            raise InputError(file, "latent column holds NaN or infinite values")
        if with_frames:
            frame = frame_matrix(file, table.column("frame"))
            frames.append(frame)
        identities.append(table.select(HIT_COLUMNS))
        latents.append(latent)
    assert weights is not None
    dims = {m.shape[1] for m in latents}
    if len(dims) > 1:
        raise HoloprotError(f"embedding files have latents of different sizes {sorted(dims)}")
    return Embeddings(
        identity=pa.concat_tables(identities),
        latent=np.concatenate(latents) if len(latents) > 1 else latents[0],
        weights_name=weights[0],
        weights_sha256=weights[1],
        frame=(np.concatenate(frames) if len(frames) > 1 else frames[0]) if with_frames else None,
    )


def frame_matrix(source: object, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``frame`` column (9 floats per row, rows x̂, ŷ, ẑ) → (n, 3, 3) float32; InputError
    naming `source` when it is not 9 finite floats per row."""
    try:
        flat = latent_matrix(column)
    except ValueError as exc:
        raise InputError(source, f"frame column: {exc}") from None
    if flat.shape[1] != 9 or not np.isfinite(flat).all():
        raise InputError(source, "frame column is not 9 finite floats per row")
    return flat.reshape(len(flat), 3, 3)
