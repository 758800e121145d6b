"""Sparse CPU kernels (numba) of the elementwise CG tensor product, forward and backward.

The dense path in :class:`~holoprot.model.layers.TensorProductNonlinearity` forms the outer
product ``x^{l1} ⊗ x^{l2}`` (``(2l1+1)(2l2+1)`` rows of ``B·C``) and multiplies it by the CG
matrix; most CG entries are zero (in the real basis ``C_{mnM} ≠ 0`` only for ``|M| ∈
{|m|+|n|, ||m|−|n||}``, about 1/8 of them at lmax 6), and the outer product and its backward are
memory traffic. Here the product is a list of *terms* ``(r1, r2, k)``: input rows ``r1, r2`` of
the degree-concatenated input ``x (R, B, C)`` and a coefficient ``k``; a self pair ``(l, l)``
keeps one term per unordered ``{m, n}`` (coefficient ``C_{mnM} + C_{nmM}`` where ``m ≠ n``).
Terms are grouped by output row; a group is summed and stored once::

    out[M_g, b, path_g·C : (path_g+1)·C] = Σ_{t ∈ g} k_t · x[r1_t, b, :] · x[r2_t, b, :]

Layout of the work: ``x`` is read as ``(R, B·C)``, so the rows of a block of ``S`` consecutive
samples are contiguous runs of ``S·C`` values; one parallel iteration owns one block and sums
each group over the whole run (``S·C ≈ BLOCK_WIDTH`` values, long vectorised loops, the block's
rows cache-resident), two terms per pass over the accumulator, then scatters it into ``out``.
Each output value is summed in the same order whatever the block size or thread count, so
outputs do not depend on either. The forward pass also adds each sample's weighted sum of
squares of the output (the signal norm of the next layer) into ``sq``, in float64, in the same
pass that scatters the accumulator (a separate pass over it cost 22–25 % of the kernel's time
at batch 512 on 2 cores).

The forward pass computes every output degree in one call (each block's rows of ``x`` are read
once, not once per degree: 10 % of the encoder's time, one thread of a busy machine), each
into its own ``(2l3+1, B, P·C)`` array, passed as a tuple (one compiled kernel per number of
degrees, cached like the rest; a numba typed list would compile its own methods in every
process, 0.3–0.5 s of each start; separate arrays stay under the allocator's mmap threshold,
where one buffer of all degrees, 52 MB at batch 512, was faulted in page by page at each call).
Groups are ordered by degree, ``M``, then path. The backward pass is the transpose of the same sums,
``gx[r1] += k·g·x[r2]`` and ``gx[r2] += k·g·x[r1]``, one call per degree accumulating into
``gx``, where ``g`` is ``∂L/∂out`` plus the share of ``∂L/∂sq`` (``2·w·s_b·out`` for a degree
of weight ``w``, passed as ``norm_grad_b = 2·w·s_b``).
Compiled on first use and cached by numba (``holoprot._util.jit.cached_njit``); float32 and float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numba import prange

from holoprot._util.devices import set_numba_threads
from holoprot._util.jit import cached_njit
from holoprot.model.cg import clebsch_gordan_array

#: Inputs of the numba tensor product with fewer elements run on one thread: for them, a parallel
#: launch costs more than it saves, and on a busy machine every launch waits for a descheduled
#: thread (a gradcheck of 588 inputs took > 30 min beside one CPU-bound process, seconds alone).
PARALLEL_MIN_ELEMENTS = 1 << 16

#: The sparse tensor product drops CG entries at or below this magnitude (e3nn's float64
#: ``wigner_3j`` gives exact zeros there; its nonzero entries are ≥ 5.7e-3 up to lmax 6).
CG_ZERO = 1e-13


@dataclass(frozen=True)
class SparseTerms:
    """Term tables of the kernels here, for one tensor product.

    ``row1, row2`` (T,) input rows of the degree-concatenated input; ``coef`` (T,) float64 and
    ``coef32`` its float32 copy; group ``g`` owns terms ``group_start[g] … group_start[g+1]``
    and writes row ``group_m[g]``, path ``group_path[g]`` of the output of degree
    ``degrees[group_degree[g]]``; ``first_group[l3]``: the first group of degree ``l3``;
    ``n_paths[i]``: the number of paths of ``degrees[i]``.
    """

    row1: np.ndarray
    row2: np.ndarray
    coef: np.ndarray
    coef32: np.ndarray
    group_start: np.ndarray
    group_m: np.ndarray
    group_path: np.ndarray
    group_degree: np.ndarray
    first_group: dict[int, int]
    degrees: np.ndarray
    n_paths: np.ndarray

    @classmethod
    def build(
        cls, ls_in: Sequence[int], nonzero_paths: Mapping[int, Sequence[tuple[int, int]]]
    ) -> SparseTerms:
        first_row, offset = {}, 0
        for l in ls_in:
            first_row[l] = offset
            offset += 2 * l + 1
        rows1, rows2, coefs, starts, group_m, group_path, group_degree = [], [], [], [0], [], [], []
        first_group = {}
        for d, (l3, pairs) in enumerate(nonzero_paths.items()):
            first_group[l3] = len(group_m)
            cgs = [_term_coefficients(l1, l2, l3) for l1, l2 in pairs]
            for big_m in range(2 * l3 + 1):
                for p, (l1, l2) in enumerate(pairs):
                    k = cgs[p][:, :, big_m]
                    m, n = np.nonzero(np.abs(k) > CG_ZERO)  # m, then n ascending
                    rows1.append(first_row[l1] + m)
                    rows2.append(first_row[l2] + n)
                    coefs.append(k[m, n])
                    starts.append(starts[-1] + len(m))
                    group_m.append(big_m)
                    group_path.append(p)
                    group_degree.append(d)
        coef = np.concatenate(coefs)

        def ints(v: list[int]) -> np.ndarray:
            return np.array(v, dtype=np.int64)

        row1, row2 = (np.concatenate(r).astype(np.int64) for r in (rows1, rows2))
        return cls(
            row1, row2, coef, coef.astype(np.float32), ints(starts), ints(group_m),
            ints(group_path), ints(group_degree), first_group, ints(list(nonzero_paths)),
            ints([len(pairs) for pairs in nonzero_paths.values()]),
        )  # fmt: skip

    def tables(self, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """Kernel arguments after ``x`` and ``chans`` (and the gradients), coefficients in
        `dtype` (float64, else float32)."""
        coef = self.coef if dtype == np.float64 else self.coef32
        return self.row1, self.row2, coef, self.group_start, self.group_m, self.group_path


def _term_coefficients(l1: int, l2: int, l3: int) -> np.ndarray:
    """Coefficients of the terms ``x_m·x_n`` of a path, ``(2l1+1, 2l2+1, 2l3+1)`` float64: the CG
    tensor, or for a self pair ``(l, l)`` one term per unordered ``{m, n}``: ``C_{mnM} +
    C_{nmM}`` above the diagonal, ``C_{mmM}`` on it, zero below."""
    cg = clebsch_gordan_array(l1, l2, l3)
    if l1 != l2:
        return cg
    upper = cg + cg.transpose(1, 0, 2)
    diagonal = np.arange(2 * l1 + 1)
    upper[diagonal, diagonal] = cg[diagonal, diagonal]
    return upper * np.triu(np.ones((2 * l1 + 1, 2 * l1 + 1)))[:, :, None]


def threads_for(size: int, threads: int) -> int:
    """Threads of a kernel call on an input of `size` elements: `threads`, or one below
    :data:`PARALLEL_MIN_ELEMENTS`."""
    return threads if size >= PARALLEL_MIN_ELEMENTS else 1


def tensor_product(
    x: np.ndarray, terms: SparseTerms, threads: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """The forward pass on NumPy arrays: ``x (R, B, C)`` float32/float64 C-contiguous (degrees
    concatenated along ``R``) → one ``(2l3+1, B, P·C)`` block per degree of ``terms.degrees``, in
    ``x``'s dtype, and each sample's :func:`~holoprot.model.layers.squared_norm` of them,
    ``(B,)`` float64; on at most `threads` threads."""
    rows, batch, chans = x.shape
    blocks = [
        np.empty((2 * int(l3) + 1, batch, int(n) * chans), dtype=x.dtype)
        for l3, n in zip(terms.degrees, terms.n_paths, strict=True)
    ]
    sq = np.zeros(batch)
    set_numba_threads(threads_for(x.size, threads))
    tp_forward(
        x.reshape(rows, batch * chans), chans, *terms.tables(x.dtype), terms.group_degree,
        1 / (2 * terms.degrees + 1.0), tuple(blocks), sq,
    )  # fmt: skip
    return blocks, sq


#: Values per block row (samples × channels) a parallel iteration sums at once: long enough for
#: the vector loops, short enough that the block's rows stay in the L2 cache (49 rows of 512
#: float32 at lmax 6: 100 KB). Measured on 2 AMD EPYC cores: 480–960 within noise of each other,
#: 60 (one sample) 2× slower per term.
BLOCK_WIDTH = 512


@cached_njit(parallel=True)
def tp_forward(
    x: np.ndarray,
    chans: int,
    row1: np.ndarray,
    row2: np.ndarray,
    coef: np.ndarray,
    group_start: np.ndarray,
    group_m: np.ndarray,
    group_path: np.ndarray,
    group_out: np.ndarray,
    out_weight: np.ndarray,
    outs: tuple[np.ndarray, ...],
    sq: np.ndarray,
) -> None:
    """Write every group into its output and add each sample's weighted sum of squares of the
    outputs to ``sq[b]``.

    x (R, B·C) contiguous (C = `chans`); row1, row2 (T,) int64 input rows; coef (T,) x's dtype;
    group g owns terms group_start[g] … group_start[g+1] and is
    ``outs[group_out[g]][group_m[g], :, group_path[g]·C :][:C]``; outs: a tuple of the
    (2l3+1, B, P·C) outputs, x's dtype (every entry written), their squares weighted by
    out_weight (float64); sq (B,) float64.
    """
    width = x.shape[1]
    batch = width // chans
    per_block = max(1, BLOCK_WIDTH // chans)
    for block in prange((batch + per_block - 1) // per_block):
        b0 = block * per_block
        n_b = min(per_block, batch - b0)
        j0 = b0 * chans
        w = n_b * chans
        acc = np.empty(w, dtype=x.dtype)
        squares = np.zeros(w, dtype=np.float64)
        for g in range(len(group_m)):
            t = group_start[g]
            end = group_start[g + 1]
            if (end - t) % 2:
                k = coef[t]
                x1 = x[row1[t], j0 : j0 + w]
                x2 = x[row2[t], j0 : j0 + w]
                for j in range(w):
                    acc[j] = k * x1[j] * x2[j]
                t += 1
            else:
                acc[:] = 0
            while t < end:  # two terms per pass over acc
                k = coef[t]
                x1 = x[row1[t], j0 : j0 + w]
                x2 = x[row2[t], j0 : j0 + w]
                k_next = coef[t + 1]
                y1 = x[row1[t + 1], j0 : j0 + w]
                y2 = x[row2[t + 1], j0 : j0 + w]
                for j in range(w):
                    acc[j] += k * x1[j] * x2[j] + k_next * y1[j] * y2[j]
                t += 2
            out = outs[group_out[g]]
            m = group_m[g]
            col = group_path[g] * chans
            weight = out_weight[group_out[g]]
            for i in range(n_b):
                dest = out[m, b0 + i, col : col + chans]
                src = acc[i * chans : (i + 1) * chans]
                sq_run = squares[i * chans : (i + 1) * chans]
                for c in range(chans):
                    v = src[c]
                    dest[c] = v
                    v64 = np.float64(v)
                    sq_run[c] += weight * (v64 * v64)
        for i in range(n_b):
            total = 0.0
            for c in range(chans):
                total += squares[i * chans + c]
            sq[b0 + i] += total


@cached_njit(parallel=True)
def tp_backward(
    x: np.ndarray,
    chans: int,
    grad_out: np.ndarray,
    out: np.ndarray,
    norm_grad: np.ndarray,
    row1: np.ndarray,
    row2: np.ndarray,
    coef: np.ndarray,
    group_start: np.ndarray,
    group_m: np.ndarray,
    group_path: np.ndarray,
    first_group: int,
    grad_x: np.ndarray,
) -> None:
    """Add one output degree's share of ∂L/∂x into `grad_x` (R, B·C), given its ∂L/∂out
    `grad_out` (2l3+1, B, P·C) and, unless `norm_grad` is empty, the output `out` and
    `norm_grad` (B,) (``∂L/∂out += norm_grad[b]·out``: the gradient through ``sq``); the other
    arguments as in :func:`tp_forward`."""
    width = x.shape[1]
    batch = width // chans
    n_groups = grad_out.shape[0] * (grad_out.shape[2] // chans)
    per_block = max(1, BLOCK_WIDTH // chans)
    with_norm = norm_grad.shape[0] > 0
    for block in prange((batch + per_block - 1) // per_block):
        b0 = block * per_block
        n_b = min(per_block, batch - b0)
        j0 = b0 * chans
        w = n_b * chans
        g_run = np.empty(w, dtype=x.dtype)
        for g in range(first_group, first_group + n_groups):
            m = group_m[g]
            col = group_path[g] * chans
            for i in range(n_b):
                src = grad_out[m, b0 + i, col : col + chans]
                if with_norm:
                    s = norm_grad[b0 + i]
                    val = out[m, b0 + i, col : col + chans]
                    for c in range(chans):
                        g_run[i * chans + c] = src[c] + s * val[c]
                else:
                    for c in range(chans):
                        g_run[i * chans + c] = src[c]
            for t in range(group_start[g], group_start[g + 1]):
                k = coef[t]
                i1 = row1[t]
                i2 = row2[t]
                x1 = x[i1, j0 : j0 + w]
                g1 = grad_x[i1, j0 : j0 + w]
                if i1 == i2:
                    for j in range(w):
                        g1[j] += 2 * (k * g_run[j]) * x1[j]
                else:
                    x2 = x[i2, j0 : j0 + w]
                    g2 = grad_x[i2, j0 : j0 + w]
                    for j in range(w):
                        kg = k * g_run[j]
                        g1[j] += kg * x2[j]
                        g2[j] += kg * x1[j]
