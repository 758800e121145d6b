"""Clebsch–Gordan tensors and the tensor-product path rules of the H-(V)AE.

CG tensors are e3nn's ``o3.wigner_3j(l1, l2, l3)`` (real basis consistent with e3nn's spherical
harmonics and ``wigner_D``; Frobenius norm 1) in float64: read from a table shipped with the
package for degrees up to ``CG_TABLE_LMAX`` (e3nn's import, with sympy, and the solves cost ≈ 0.5 s
of every model's start-up), computed with e3nn above it; cached in memory.

A *path* ``(l1, l2) → l3`` of the elementwise tensor-product nonlinearity maps channel ``c`` of
degrees ``l1`` and ``l2`` to channel ``c`` of degree ``l3``::

    out^{l3}_{b,c,M} = Σ_{m,n} C^{l1 l2 l3}_{m n M} x^{l1}_{b,c,m} x^{l2}_{b,c,n}

For each ``l3`` the outputs of its paths are concatenated along the channel axis in the
*reference order* returned by :func:`tp_paths` (not sorted; it decides which weight of the next
linear layer multiplies which path, so it matters for loading reference weights).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from holoprot._util.disjoint_sets import DisjointSets

if TYPE_CHECKING:
    import torch

__all__ = [
    "CG_TABLE",
    "CG_TABLE_LMAX",
    "LS_RULES",
    "clebsch_gordan",
    "clebsch_gordan_array",
    "nonzero_channels",
    "nonzero_path_indices",
    "nonzero_paths",
    "solve_cg_table",
    "tp_paths",
]

LS_RULES = ("efficient", "full")

#: `solve_cg_table(CG_TABLE_LMAX)` as solved once and shipped (tests/test_so3.py checks it
#: against a fresh e3nn solve, bit for bit).
CG_TABLE = Path(__file__).parents[1] / "data" / "wigner_3j.npz"
CG_TABLE_LMAX = 6


def solve_cg_table(lmax: int) -> dict[str, np.ndarray]:
    """e3nn's ``wigner_3j(l1, l2, l3)`` in float64 for every coupling with all degrees <= lmax,
    keyed ``"l1_l2_l3"``."""
    import torch

    from holoprot._util.e3nn import o3

    return {
        f"{l1}_{l2}_{l3}": o3.wigner_3j(l1, l2, l3, dtype=torch.float64, device="cpu").numpy()
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1)
    }


@functools.cache
def _shipped_cg_table() -> dict[str, np.ndarray]:
    with np.load(CG_TABLE, allow_pickle=False) as table:
        return {name: table[name] for name in table.files}


@functools.cache
def _wigner_3j_f64(l1: int, l2: int, l3: int) -> np.ndarray:
    if max(l1, l2, l3) <= CG_TABLE_LMAX:
        return _shipped_cg_table()[f"{l1}_{l2}_{l3}"]
    import torch

    from holoprot._util.e3nn import o3

    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64, device="cpu").numpy()


def clebsch_gordan_array(l1: int, l2: int, l3: int) -> np.ndarray:
    """CG tensor ``(2l1+1, 2l2+1, 2l3+1)`` as a float64 NumPy array (a fresh copy; the master is
    cached). Needs torch only for degrees above :data:`CG_TABLE_LMAX`."""
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(f"({l1}, {l2}) cannot couple to {l3}")
    return _wigner_3j_f64(l1, l2, l3).copy()


def clebsch_gordan(l1: int, l2: int, l3: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """:func:`clebsch_gordan_array` as a CPU tensor in `dtype` (default float64)."""
    import torch

    return torch.from_numpy(clebsch_gordan_array(l1, l2, l3)).to(dtype or torch.float64)


def _minimum_spanning_edges(
    n_nodes: int, edges: Sequence[tuple[int, int, int]]
) -> list[tuple[int, int]]:
    """Kruskal's minimum spanning forest of ``(u, v, weight)`` edges on nodes ``0..n_nodes-1``.

    Ties in weight are taken in (u, v) order, as networkx's ``minimum_spanning_edges`` (which
    the reference uses) takes edges inserted in that order: the same forest, without importing
    networkx (≈ 0.1 s).
    """
    sets = DisjointSets(n_nodes)
    ordered = sorted(edges, key=lambda e: (e[2], e[0], e[1]))
    return [(u, v) for u, v, _ in ordered if sets.union(u, v)]


def _connections(
    ls_in: Sequence[int], ls_out: Sequence[int], rule: str
) -> dict[int, dict[int, list[int]]]:
    """Nested dict ``l1 → l2 → [l3, …]`` in the reference's insertion order."""
    ls_in = sorted(set(ls_in))
    ls_out = sorted(set(ls_out))
    connections: dict[int, dict[int, list[int]]] = {}
    if rule == "full":
        # l1 ascending, l2 ≥ l1 ascending, l3 ascending (filter_symmetric=True).
        for l1 in ls_in:
            for l2 in ls_in:
                if l2 < l1:
                    continue
                l3s = [l3 for l3 in ls_out if abs(l1 - l2) <= l3 <= l1 + l2]
                if l3s:
                    connections.setdefault(l1, {})[l2] = l3s
        return connections
    if rule != "efficient":
        raise ValueError(f"unknown ls rule {rule!r}; expected one of {LS_RULES}")
    # For each l3: minimum spanning tree of the coupling graph on 0..L (edge weight
    # (2l1+1)(2l2+1), self-loops dropped) plus every self pair (l, l) with l3 ≤ 2l;
    # pairs stored as (max, min), sorted; the nested dict is filled l3 by l3.
    lmax_in = max(ls_in)
    for l3 in ls_out:
        edges = [
            (l1, l2, (2 * l1 + 1) * (2 * l2 + 1))
            for l1 in ls_in
            for l2 in ls_in
            if l1 < l2 and abs(l1 - l2) <= l3 <= l1 + l2
        ]
        pairs = {(max(u, v), min(u, v)) for u, v in _minimum_spanning_edges(lmax_in + 1, edges)}
        pairs |= {(l, l) for l in ls_in if l3 <= 2 * l}
        for l1, l2 in sorted(pairs):
            connections.setdefault(l1, {}).setdefault(l2, []).append(l3)
    return connections


def tp_paths(
    ls_in: Sequence[int], ls_out: Sequence[int], rule: str
) -> dict[int, list[tuple[int, int]]]:
    """Paths of the elementwise tensor product, per output degree, in concatenation order.

    Returns ``{l3: [(l1, l2), …]}`` (only ``l3`` with at least one path). Channel block ``p`` of
    the ``l3`` output holds path ``p``; the CG tensor used is ``clebsch_gordan(l1, l2, l3)``
    with ``l1, l2`` in the listed order ('efficient': ``l1 ≥ l2``; 'full': ``l1 ≤ l2``).
    """
    order: dict[int, list[tuple[int, int]]] = {}
    for l1, inner in _connections(ls_in, ls_out, rule).items():
        for l2, l3s in inner.items():
            for l3 in l3s:
                order.setdefault(l3, []).append((l1, l2))
    return dict(sorted(order.items()))


def nonzero_path_indices(paths: dict[int, list[tuple[int, int]]]) -> dict[int, list[int]]:
    """Per ``l3`` of :func:`tp_paths`' result, the indices of the paths that are not identically
    zero in the product of a feature with itself: a self path ``(l, l) → l3`` sees the symmetric
    ``x_m x_n`` and ``C^{l l l3}`` is antisymmetric in ``(m, n)`` for odd ``l3``, so those
    vanish."""
    return {
        l3: [i for i, (l1, l2) in enumerate(pairs) if l1 != l2 or l3 % 2 == 0]
        for l3, pairs in paths.items()
    }


def nonzero_paths(paths: dict[int, list[tuple[int, int]]]) -> dict[int, list[tuple[int, int]]]:
    """:func:`tp_paths`' result without the identically-zero paths
    (:func:`nonzero_path_indices`), and without the ``l3`` left with none."""
    return {
        l3: [paths[l3][i] for i in indices]
        for l3, indices in nonzero_path_indices(paths).items()
        if indices
    }


def nonzero_channels(indices: list[int], mul: int) -> np.ndarray:
    """Channel indices, in an ``l3`` output's full layout (``mul`` channels per path), of the
    paths `indices` (:func:`nonzero_path_indices`): int64, ascending."""
    return (np.asarray(indices, dtype=np.int64)[:, None] * mul + np.arange(mul)).ravel()
