"""Approximate nearest neighbours: an HNSW graph (FAISS IndexHNSWFlat) over unit-length latents.

FAISS was chosen by measurement against usearch, hnswlib and exact NumPy search
(benchmarks/bench_search.py, benchmarks/RESULTS.md): at equal recall its HNSW answers about
twice as many queries per CPU-second as usearch's and as many as hnswlib's, and unlike hnswlib
it ships binary wheels. With inner-product metric on unit vectors, 1 − score is the cosine
distance 1 − cos θ that `holoprot.search.exact` computes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from holoprot.errors import HoloprotError

FILE_NAME = "hnsw.faiss"
#: Graph degree M and candidate-list sizes at build and query time (recall@10 ≥ 0.95 on BM5
#: latents; benchmarks/RESULTS.md).
PARAMETERS = {"M": 16, "ef_construction": 128, "ef_search": 64}


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads or len(os.sched_getaffinity(0)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class Graph:
    """An HNSW graph whose ids are row numbers 0…n−1."""

    def __init__(self, index) -> None:  # faiss.IndexHNSWFlat
        self._index = index

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(
        self, queries: np.ndarray, k: int, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of unit `queries` (m, d): distances (m, k) float32 ascending, row numbers (m, k)
        int64, and which queries got all k neighbours (m,) bool (the graph may find fewer)."""
        with _threads(threads):
            scores, rows = self._index.search(np.ascontiguousarray(queries, np.float32), k)
        complete = (rows >= 0).all(axis=1)
        return np.maximum(1.0 - scores, 0.0).astype(np.float32), rows.astype(np.int64), complete

    def vectors(self) -> np.ndarray:
        """The stored vectors, (n, d) float32 in row order."""
        return np.asarray(self._index.reconstruct_n(0, len(self)), dtype=np.float32)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int) -> Graph:
        """Read a graph file (check its sha256 first: the reader trusts its input)."""
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise HoloprotError(f"{path}: cannot read the HNSW graph ({exc})") from None
        if not isinstance(index, faiss.IndexHNSWFlat) or index.d != dim:
            raise HoloprotError(f"{path}: not an HNSW graph of {dim}-d vectors")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise HoloprotError(f"{path}: HNSW graph with another metric than inner product")
        index.hnsw.efSearch = PARAMETERS["ef_search"]
        return cls(index)


def build(vectors: np.ndarray, threads: int | None = None) -> Graph:
    """An HNSW graph over unit-length rows (n, d) float32; id i = row i."""
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], PARAMETERS["M"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = PARAMETERS["ef_construction"]
    index.hnsw.efSearch = PARAMETERS["ef_search"]
    with _threads(threads):
        index.add(np.ascontiguousarray(vectors, np.float32))
    return Graph(index)
