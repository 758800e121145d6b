"""Sparse CPU kernels (numba) of the elementwise CG tensor product, forward and backward.

The dense path in :class:`~holoprot.model.layers.TensorProductNonlinearity` forms the outer
product ``x^{l1} ⊗ x^{l2}`` (``(2l1+1)(2l2+1)`` rows of ``B·C``) and multiplies it by the CG
matrix; most CG entries are zero (in the real basis ``C_{mnM} ≠ 0`` only for ``|M| ∈
{|m|+|n|, ||m|−|n||}``, about 1/8 of them at lmax 6), and the outer product and its backward are
memory traffic. Here the product is a list of *terms* ``(r1, r2, k)``: input rows ``r1, r2`` of
the degree-concatenated input ``x (R, B, C)`` and a coefficient ``k``; a self pair ``(l, l)``
keeps one term per unordered ``{m, n}`` (coefficient ``C_{mnM} + C_{nmM}`` where ``m ≠ n``).
Terms are grouped by output row; per sample ``b`` (one parallel iteration) a group is summed in a
``C``-vector and stored once::

    out[M_g, b, path_g·C : (path_g+1)·C] = Σ_{t ∈ g} k_t · x[r1_t, b, :] · x[r2_t, b, :]

One call computes one output degree ``l3``, the ``(2l3+1, B, P·C)`` block of its ``P`` paths
(groups ordered by ``M``, then path). The backward pass is the transpose of the same sums,
``gx[r1] += k·g·x[r2]`` and ``gx[r2] += k·g·x[r1]``, accumulated degree by degree.
Compiled on first use and cached by numba (``holoprot._util.jit.cached_njit``); float32 and float64.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from holoprot._util.jit import cached_njit


@cached_njit(parallel=True)
def tp_forward(
    x: np.ndarray,
    row1: np.ndarray,
    row2: np.ndarray,
    coef: np.ndarray,
    group_start: np.ndarray,
    group_m: np.ndarray,
    group_path: np.ndarray,
    first_group: int,
    out: np.ndarray,
) -> None:
    """Write one output degree: groups first_group … first_group + len(out)·P − 1 into `out`.

    x (R, B, C) contiguous; row1, row2 (T,) int64 input rows; coef (T,) x's dtype; group g owns
    terms group_start[g] … group_start[g+1] and is ``out[group_m[g], :, group_path[g]·C :][:C]``;
    out (2l3+1, B, P·C) (every entry written).
    """
    n_rows, batch, chans = x.shape
    n_groups = out.shape[0] * (out.shape[2] // chans)
    for b in prange(batch):
        acc = np.empty(chans, dtype=x.dtype)
        for g in range(first_group, first_group + n_groups):
            acc[:] = 0
            for t in range(group_start[g], group_start[g + 1]):
                k = coef[t]
                i1 = row1[t]
                i2 = row2[t]
                for c in range(chans):
                    acc[c] += k * x[i1, b, c] * x[i2, b, c]
            m = group_m[g]
            col = group_path[g] * chans
            for c in range(chans):
                out[m, b, col + c] = acc[c]


@cached_njit(parallel=True)
def tp_backward(
    x: np.ndarray,
    grad_out: np.ndarray,
    row1: np.ndarray,
    row2: np.ndarray,
    coef: np.ndarray,
    group_start: np.ndarray,
    group_m: np.ndarray,
    group_path: np.ndarray,
    first_group: int,
    grad_x: np.ndarray,
) -> None:
    """Add one output degree's share of ∂L/∂x into `grad_x` (R, B, C), given its ∂L/∂out
    (2l3+1, B, P·C); the arguments of :func:`tp_forward`."""
    n_rows, batch, chans = x.shape
    n_groups = grad_out.shape[0] * (grad_out.shape[2] // chans)
    for b in prange(batch):
        for g in range(first_group, first_group + n_groups):
            m = group_m[g]
            col = group_path[g] * chans
            for t in range(group_start[g], group_start[g + 1]):
                k = coef[t]
                i1 = row1[t]
                i2 = row2[t]
                for c in range(chans):
                    kg = k * grad_out[m, b, col + c]
                    grad_x[i1, b, c] += kg * x[i2, b, c]
                    grad_x[i2, b, c] += kg * x[i1, b, c]
