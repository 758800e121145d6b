"""Clebsch–Gordan tensors and the tensor-product path rules of the H-(V)AE.

CG tensors are e3nn's ``o3.wigner_3j(l1, l2, l3)`` (real basis consistent with e3nn's spherical
harmonics and ``wigner_D``; Frobenius norm 1), computed in float64 and cached in memory only.

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

import networkx as nx
import torch

from holoprot._e3nn import o3

__all__ = ["LS_RULES", "clebsch_gordan", "tp_paths"]

LS_RULES = ("efficient", "full")


@functools.cache
def _wigner_3j_f64(l1: int, l2: int, l3: int) -> torch.Tensor:
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64, device="cpu")


def clebsch_gordan(l1: int, l2: int, l3: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """CG tensor ``(2l1+1, 2l2+1, 2l3+1)`` on CPU (a fresh copy; the float64 master is cached)."""
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(f"({l1}, {l2}) cannot couple to {l3}")
    return _wigner_3j_f64(l1, l2, l3).to(dtype=dtype, copy=True)


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
        graph = nx.Graph()
        graph.add_nodes_from(range(lmax_in + 1))
        for l1 in ls_in:
            for l2 in ls_in:
                if l1 < l2 and abs(l1 - l2) <= l3 <= l1 + l2:
                    graph.add_edge(l1, l2, weight=(2 * l1 + 1) * (2 * l2 + 1))
        pairs = {(max(u, v), min(u, v)) for u, v in nx.minimum_spanning_edges(graph, data=False)}
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
