"""Approximate nearest neighbours: an HNSW graph (usearch) over unit-length float32 latents.

usearch was chosen by measurement against hnswlib, FAISS (HNSW and IVF) and exact NumPy search
(benchmarks/bench_search.py, benchmarks/RESULTS.md). With inner-product metric on unit vectors
its distance is 1 − cos θ, the cosine distance `holoprot.search.exact` computes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from holoprot.errors import HoloprotError

FILE_NAME = "hnsw.usearch"
#: Graph degree and candidate-list sizes at build and query time (recall ≥ 0.95 at k = 10 on
#: BM5 latents and on 10^6 noisy copies of them; benchmarks/RESULTS.md).
PARAMETERS = {"connectivity": 16, "expansion_add": 128, "expansion_search": 64}


def _threads(threads: int | None) -> int:
    return threads if threads else len(os.sched_getaffinity(0))


class Graph:
    """An HNSW graph whose keys are row numbers 0…n−1."""

    def __init__(self, index) -> None:  # usearch.index.Index
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def search(
        self, queries: np.ndarray, k: int, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of unit `queries` (m, d): distances (m, k) float32 ascending, row numbers (m, k)
        int64, and which queries got all k neighbours (m,) bool (the graph may find fewer)."""
        found = self._index.search(queries, k, threads=_threads(threads))
        rows = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), k)
        distances = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), k)
        complete = np.asarray(found.counts).reshape(len(queries)) >= k
        return np.maximum(distances, 0.0), rows, complete

    def vectors(self) -> np.ndarray:
        """The stored vectors, (n, d) float32 in row order."""
        return np.asarray(self._index.get(np.arange(len(self))), dtype=np.float32)

    def save(self, path: Path) -> None:
        self._index.save(str(path))

    @classmethod
    def load(cls, path: Path, dim: int) -> Graph:
        """Read a graph file (check its sha256 first: the reader trusts its input)."""
        from usearch.index import Index as USearchIndex

        index = USearchIndex(ndim=dim, metric="ip", dtype="f32", **PARAMETERS)
        try:
            index.load(str(path))
        except (RuntimeError, ValueError) as exc:
            raise HoloprotError(f"{path}: cannot read the HNSW graph ({exc})") from None
        if index.ndim != dim:
            raise HoloprotError(f"{path}: graph of {index.ndim}-d vectors, expected {dim}")
        return cls(index)


def build(vectors: np.ndarray, threads: int | None = None) -> Graph:
    """An HNSW graph over unit-length rows (n, d) float32; key i = row i."""
    from usearch.index import Index as USearchIndex

    index = USearchIndex(ndim=vectors.shape[1], metric="ip", dtype="f32", **PARAMETERS)
    index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=_threads(threads))
    return Graph(index)
