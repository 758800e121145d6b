"""A nearest-neighbour index over residue latents: build, search, save, load.

    >>> from holoprot import Index
    >>> index = Index.build(["bm5.parquet"])              # files/folders made by `holoprot embed`
    >>> hits = index.search(holoprot.embed_table("1abc.pdb"), k=10)   # pyarrow.Table
    >>> index.save("bm5-index"); index = Index.load("bm5-index")

Distance: cosine distance 1 − cos θ between latents (0 = same direction, 2 = opposite). Latents
are normalised to unit length once, at build time. On BM5 it retrieves residues of the query's
type as often as Euclidean distance on the raw latent does (benchmarks/RESULTS.md), and unlike
Euclidean distance its scale does not depend on the weights, so a cut-off means the same for any
model.

Method: exact search (NumPy/BLAS) below `EXACT_BELOW` rows, where it needs no build and answers
fast enough; above it an HNSW graph (see `holoprot.search.hnsw`). Both answer through the same
API; `method="exact"` or `"hnsw"` forces one.

On disk an index is a folder: ``index.json`` (format name and version, method, metric, sizes,
the weights name and sha256, and the sha256 of every other file), ``rows.parquet`` (identity
columns, row i = label i) and ``vectors.npy`` (exact: unit-length float32, loaded with
allow_pickle=False) or ``hnsw.faiss`` (the library's own binary format), and, when the
embeddings had a ``frame`` column (`holoprot embed --frames`), ``frames.npy`` (float32
(n, 3, 3), row i = label i; used by `holoprot.search.superpose`). Nothing is unpickled;
every file is checked against its sha256 before it is opened. ``index.json`` is sealed
(`holoprot._util.hashing.seal`): an edited field (say ``weights_sha256``, which decides which query
latents the index accepts) is refused on loading. Every file is written under a temporary name
and renamed, ``index.json`` last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from holoprot import __version__
from holoprot._util.atomic import atomic_path, write_json_atomic
from holoprot._util.hashing import check_seal, seal, sha256_file
from holoprot.errors import HoloprotError
from holoprot.search import hnsw
from holoprot.search.embeddings import HIT_COLUMNS, Embeddings, latent_matrix, read_embeddings
from holoprot.search.exact import exact_search, normalise

FORMAT = "holoprot-index"
FORMAT_VERSION = 1
METRIC = "cosine"
#: Below this many rows `method="auto"` uses exact search (see benchmarks/RESULTS.md).
EXACT_BELOW = 50_000
#: The frames file of an index built from embeddings with a ``frame`` column.
FRAMES_FILE = "frames.npy"

Method = Literal["auto", "exact", "hnsw"]


class IndexFileError(HoloprotError):
    """A missing, tampered or mismatched index folder."""


class Index:
    """Latent vectors of residues with their identity, searchable by cosine distance.

    Build with `Index.build`, read with `Index.load`; `len(index)` is the number of residues.
    """

    def __init__(
        self,
        rows: pa.Table,
        method: Literal["exact", "hnsw"],
        dim: int,
        weights_name: str,
        weights_sha256: str,
        *,
        vectors: np.ndarray | None = None,
        graph: hnsw.Graph | None = None,
        frames: np.ndarray | None = None,
    ) -> None:
        self.rows = rows
        self.method = method
        self.dim = dim
        self.weights_name = weights_name
        self.weights_sha256 = weights_sha256
        self._vectors = vectors
        self._graph = graph
        #: (n, 3, 3) float32 learned frames (rows x̂, ŷ, ẑ) of the rows, or None.
        self.frames = frames

    def __len__(self) -> int:
        return self.rows.num_rows

    def __repr__(self) -> str:
        frames = ", frames" if self.frames is not None else ""
        return (
            f"Index({len(self)} residues, {self.method}, {METRIC}{frames},"
            f" weights {self.weights_name})"
        )

    # ---- building ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        embeddings: Sequence[str | os.PathLike] | str | os.PathLike | Embeddings,
        *,
        method: Method = "auto",
        threads: int | None = None,
        exact_below: int = EXACT_BELOW,
    ) -> Index:
        """Index the `latent` column of embedding Parquet files (or folders, or `Embeddings`).

        Args:
            embeddings: files/folders written by `holoprot embed` (one set of weights), or
                the result of `read_embeddings`.
            method: ``auto`` (exact below `EXACT_BELOW` rows, else HNSW), ``exact`` or ``hnsw``.
            threads: threads for building the graph (default: all CPUs).
            exact_below: the row count from which ``auto`` builds an HNSW graph (tests lower
                it to exercise that path on small data).
        """
        emb = embeddings if isinstance(embeddings, Embeddings) else read_embeddings(embeddings)
        if len(emb) == 0:
            raise HoloprotError("no residue to index: the embedding files are empty")
        if method == "auto":
            method = "exact" if len(emb) < exact_below else "hnsw"
        if method not in ("exact", "hnsw"):
            raise HoloprotError(f"unknown index method {method!r} (auto, exact or hnsw)")
        vectors = normalise(emb.latent)
        graph = hnsw.build(vectors, threads=threads) if method == "hnsw" else None
        return cls(
            emb.identity,
            method,
            vectors.shape[1],
            emb.weights_name,
            emb.weights_sha256,
            vectors=vectors if method == "exact" else None,
            graph=graph,
            frames=emb.frame,
        )

    # ---- searching --------------------------------------------------------------------------
    def search_vectors(
        self, queries: np.ndarray, k: int = 10, *, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest indexed residues of each query latent.

        Args:
            queries: (m, dim) latents (any length; normalised here).
            k: neighbours per query (capped at the index size).
            exact: brute-force search even on an HNSW index (slow on large indexes).

        Returns:
            cosine distances (m, k) float32, ascending, and row numbers (m, k) int64 into
            `rows`.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise HoloprotError(f"queries must be (m, {self.dim}) latents, got {q.shape}")
        if k < 1:
            raise HoloprotError(f"k must be at least 1, got {k}")
        q = normalise(q)
        if self._graph is None or exact:
            return exact_search(self._all_vectors(), q, k)
        distances, rows, complete = self._graph.search(q, min(k, len(self)))
        if not complete.all():  # rare: the graph found fewer than k; answer those exactly
            missing = ~complete
            distances[missing], rows[missing] = exact_search(self._all_vectors(), q[missing], k)
        return distances, rows

    def _all_vectors(self) -> np.ndarray:
        if self._vectors is None:
            assert self._graph is not None
            self._vectors = self._graph.vectors()
        return self._vectors

    def search(
        self,
        queries: pa.Table,
        k: int = 10,
        *,
        weights_sha256: str | None = None,
        exact: bool = False,
    ) -> pa.Table:
        """Hits of each row of an embedding table (identity columns + `latent`).

        Args:
            queries: a table from `holoprot.embed_table` or an embeddings Parquet file.
            k: hits per query.
            weights_sha256: the weights that made the query latents; refused if they are not
                the index's (taken from the table's metadata when it has it).
            exact: brute-force search even on an HNSW index.

        Returns:
            one row per (query, hit): ``query`` (when the table has it) and the ``query_*``
            identity columns of the query, ``rank``
            (1…k), ``distance`` (cosine distance) and the hit's identity columns.
        """
        if weights_sha256 is None and queries.schema.metadata:
            raw = queries.schema.metadata.get(b"weights_sha256")
            weights_sha256 = json.loads(raw) if raw else None
        self.check_weights(weights_sha256)
        if "latent" not in queries.column_names:
            raise HoloprotError("query table has no latent column")
        distances, rows = self.search_vectors(
            latent_matrix(queries.column("latent")), k, exact=exact
        )
        return self.hits_table(queries, distances, rows)

    def check_weights(self, weights_sha256: str | None) -> None:
        """Refuse query latents made with other weights than the index's."""
        if weights_sha256 is not None and weights_sha256 != self.weights_sha256:
            raise HoloprotError(
                f"the queries were embedded with weights sha256 {weights_sha256[:12]}…, but the"
                f" index holds latents of {self.weights_name} (sha256"
                f" {self.weights_sha256[:12]}…); embed them with the index's weights"
            )

    def hits_table(self, queries: pa.Table, distances: np.ndarray, rows: np.ndarray) -> pa.Table:
        """Join search results with the query and hit identity columns (one row per hit)."""
        m, k = rows.shape
        query_rows = np.repeat(np.arange(m), k)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        if "query" in queries.column_names:
            columns["query"] = queries.column("query").take(query_rows)
        for name in HIT_COLUMNS:
            if name in queries.column_names:
                columns[f"query_{name}"] = queries.column(name).take(query_rows)
        columns["rank"] = pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), m))
        columns["distance"] = pa.array(distances.reshape(-1))
        hit = self.rows.take(pa.array(rows.reshape(-1)))
        for name in HIT_COLUMNS:
            columns[name] = hit.column(name)
        return pa.table(columns)

    # ---- files ------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index folder (created; existing index files in it are replaced)."""
        folder = Path(directory)
        if folder.exists() and not folder.is_dir():
            raise HoloprotError(f"{folder}: exists and is not a directory")
        if not folder.parent.is_dir():
            raise HoloprotError(f"{folder.parent}: output folder does not exist")
        folder.mkdir(exist_ok=True)
        # under temporary names, renamed: a link planted at a file's name is replaced, not
        # written through
        with atomic_path(folder / "rows.parquet") as tmp:
            pq.write_table(self.rows, tmp)
        files = ["rows.parquet"]
        if self._graph is not None:
            with atomic_path(folder / hnsw.FILE_NAME) as tmp:
                self._graph.save(tmp)
            files.append(hnsw.FILE_NAME)
        else:
            with atomic_path(folder / "vectors.npy", suffix=".npy") as tmp:
                np.save(tmp, self._all_vectors(), allow_pickle=False)
            files.append("vectors.npy")
        if self.frames is not None:
            with atomic_path(folder / FRAMES_FILE, suffix=".npy") as tmp:
                np.save(tmp, np.ascontiguousarray(self.frames, np.float32), allow_pickle=False)
            files.append(FRAMES_FILE)
        else:  # a frames.npy of an index saved here before is no longer listed: remove it
            (folder / FRAMES_FILE).unlink(missing_ok=True)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "holoprot_version": __version__,
            "method": self.method,
            "metric": METRIC,
            "rows": len(self),
            "dim": self.dim,
            "weights_name": self.weights_name,
            "weights_sha256": self.weights_sha256,
            "hnsw": hnsw.PARAMETERS if self._graph is not None else None,
            "files": {name: sha256_file(folder / name) for name in files},
        }
        write_json_atomic(folder / "index.json", seal(meta), indent=2)
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Index:
        """Read an index folder, checking its format version and every file's sha256."""
        folder = Path(directory)
        meta = _read_meta(folder)
        files: dict[str, str] = meta["files"]
        for name, sha in files.items():
            path = folder / name
            if Path(name).name != name or not path.is_file():
                raise IndexFileError(f"{folder}: index file {name} is missing")
            if sha256_file(path) != sha:
                raise IndexFileError(
                    f"{path}: sha256 does not match index.json (the index was modified or"
                    " damaged; rebuild it)"
                )
        try:
            rows = pq.read_table(folder / "rows.parquet")
        except (OSError, pa.ArrowException) as exc:
            raise IndexFileError(f"{folder / 'rows.parquet'}: cannot read it ({exc})") from None
        n, dim = meta["rows"], meta["dim"]
        if rows.num_rows != n or not set(HIT_COLUMNS) <= set(rows.column_names):
            raise IndexFileError(f"{folder / 'rows.parquet'}: does not match index.json")
        vectors, graph = None, None
        if meta["method"] == "exact":
            try:
                vectors = np.load(folder / "vectors.npy", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise IndexFileError(f"{folder / 'vectors.npy'}: cannot read it ({exc})") from None
            if vectors.shape != (n, dim) or vectors.dtype != np.float32:
                raise IndexFileError(f"{folder / 'vectors.npy'}: does not match index.json")
        else:
            graph = hnsw.Graph.load(folder / hnsw.FILE_NAME, dim)
            if len(graph) != n:
                raise IndexFileError(f"{folder / hnsw.FILE_NAME}: does not match index.json")
        frames = None
        if FRAMES_FILE in files:
            try:
                frames = np.load(folder / FRAMES_FILE, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise IndexFileError(f"{folder / FRAMES_FILE}: cannot read it ({exc})") from None
            if frames.shape != (n, 3, 3) or frames.dtype != np.float32:
                raise IndexFileError(f"{folder / FRAMES_FILE}: does not match index.json")
        return cls(
            rows,
            meta["method"],
            dim,
            meta["weights_name"],
            meta["weights_sha256"],
            vectors=vectors,
            graph=graph,
            frames=frames,
        )


_REQUIRED = {
    "format": str,
    "format_version": int,
    "method": str,
    "metric": str,
    "rows": int,
    "dim": int,
    "weights_name": str,
    "weights_sha256": str,
    "files": dict,
}


def _read_meta(folder: Path) -> dict:
    path = folder / "index.json"
    if not folder.is_dir():
        raise IndexFileError(f"{folder}: no such index directory")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexFileError(f"{folder}: not a holoprot index (no index.json)") from None
    except (OSError, ValueError) as exc:
        raise IndexFileError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IndexFileError(f"{path}: not a holoprot index")
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexFileError(
            f"{path}: index format version {meta.get('format_version')}, this holoprot reads"
            f" version {FORMAT_VERSION}; rebuild the index"
        )
    try:
        check_seal(meta, path)
    except HoloprotError as exc:
        raise IndexFileError(f"{exc}; rebuild the index") from None
    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind):
            raise IndexFileError(f"{path}: missing or malformed '{key}'")
    if meta["metric"] != METRIC or meta["method"] not in ("exact", "hnsw"):
        raise IndexFileError(f"{path}: unknown method {meta['method']} or metric {meta['metric']}")
    expected = {"rows.parquet", "vectors.npy" if meta["method"] == "exact" else hnsw.FILE_NAME}
    if set(meta["files"]) - {FRAMES_FILE} != expected:
        raise IndexFileError(
            f"{path}: lists files {sorted(meta['files'])}, expected {sorted(expected)}"
        )
    return meta
