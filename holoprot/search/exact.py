"""Exact k-nearest-neighbour search by cosine distance with NumPy/BLAS, in bounded memory."""

from __future__ import annotations

import numpy as np

#: Similarity-matrix entries computed at once (bounds the working memory to ~64 MB float32).
_BLOCK_ENTRIES = 1 << 24


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, (n, d) float32 (zero rows stay zero)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def exact_search(
    database: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest database rows of each query by cosine distance 1 − cos θ.

    Args:
        database: (n, d) unit-length float32 rows.
        queries: (m, d) unit-length float32 rows.
        k: neighbours per query (at most n).

    Returns:
        distances (m, k) float32, ascending, and row numbers (m, k) int64; ties broken by the
        lower row number.
    """
    n, m = len(database), len(queries)
    k = min(k, n)
    distances = np.empty((m, k), np.float32)
    rows = np.empty((m, k), np.int64)
    step = max(1, _BLOCK_ENTRIES // max(n, 1))
    for start in range(0, m, step):
        sim = queries[start : start + step] @ database.T
        if k < n:
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), (len(sim), n))
        top = np.take_along_axis(sim, part, axis=1)
        order = np.lexsort((part, -top), axis=1)
        rows[start : start + step] = np.take_along_axis(part, order, axis=1)
        distances[start : start + step] = 1.0 - np.take_along_axis(top, order, axis=1)
    np.maximum(distances, 0.0, out=distances)
    return distances, rows
