"""Fused CPU kernel of the Zernike projection (numba), used by `ZernikeBasis.project` on CPU.

Same basis as the batched PyTorch path in `zernike.basis`, summed in a cheaper order. Per atom, with
u = ρ·x̂ and t = 2ρ² − 1 (everything float64):

- the weight w = 1/‖Z‖² ('square') from one Chebyshev series in t (Clenshaw), or w = 1;
- A_j = w·T_j(t), j < J = nmax//2 + 1: the radial functions are Chebyshev sums
  Q_nl(ρ²) = R_nl(ρ)/ρ^l = Σ_(j ≤ (n−l)/2) cheb[j, nl] T_j(t) (`radial.chebyshev_tables`;
  better conditioned than powers of ρ²: coefficients within ~4·10⁻¹⁴ of the largest one of an
  extended-precision evaluation, where float64 powers of ρ² are off by up to ~5·10⁻¹¹);
- H_k = Y_lm(u), k = l² + l + m, e3nn's real spherical harmonics ('component') of all degrees,
  from the recurrence of `solid_harmonics` times one constant each (`e3nn_harmonic_tables`).

Per (neighbourhood, channel) the moments S[j, k] = Σ_a A_j(a) H_k(a), a matrix product over the
channel's atoms (only the S[j, k] some Q_nl needs: 427 multiply-adds per atom at lmax 6, nmax 20,
where the monomial kernel before it spent 1,329 on radial values and monomial moments), and then
the coefficient of (n, l, m) is Σ_j cheb[j, nl] S[j, l² + l + m] (2,090 multiply-adds per group).
Per-atom arrays are structure-of-arrays so that their loops vectorise; scratch is allocated once
per chunk of neighbourhoods. Compiled on first use and cached by numba (`_util.jit.cached_njit`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from holoprot._util.jit import cached_njit
from holoprot.zernike.monomials import monomial_exponents, monomials_to_sh

#: Neighbourhoods per parallel iteration (each allocates its scratch once).
_CHUNK = 16
_FASTMATH = {"contract"}  # fused multiply-adds; no reassociation


@cached_njit(fastmath=_FASTMATH)
def solid_harmonics(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, r2: np.ndarray, lmax: int, cs: np.ndarray,
    p: np.ndarray,
) -> None:  # fmt: skip
    """Unnormalised real solid harmonics of the points (x, y, z), z the polar axis, each (n,).

    r2 = x² + y² + z² (n,). Writes cs (2·lmax + 1, ≥ n): 1, Re (x + iy)^m for m = 1…lmax, then
    Im (x + iy)^m; p ((lmax+1)(lmax+2)/2, ≥ n): row l(l+1)/2 + m holds the Legendre part P_lm
    (P_mm = 1, (l − m) P_lm = (2l − 1) z P_(l−1)m − (l + m − 1) r2 P_(l−2)m). P_lm·Re/Im (x + iy)^m
    are homogeneous harmonic polynomials of degree l.
    """
    n = len(x)
    for a in range(n):
        cs[0, a] = 1.0
    if lmax >= 1:
        for a in range(n):
            cs[1, a], cs[lmax + 1, a] = x[a], y[a]
    for m in range(2, lmax + 1):
        for a in range(n):
            re, im = cs[m - 1, a], cs[lmax + m - 1, a]
            cs[m, a] = x[a] * re - y[a] * im
            cs[lmax + m, a] = x[a] * im + y[a] * re
    for m in range(lmax + 1):
        row = m * (m + 1) // 2 + m
        for a in range(n):
            p[row, a] = 1.0
        for l in range(m + 1, lmax + 1):
            row, up1, up2 = l * (l + 1) // 2 + m, (l - 1) * l // 2 + m, (l - 2) * (l - 1) // 2 + m
            f1 = (2.0 * l - 1.0) / (l - m)
            if l == m + 1:
                for a in range(n):
                    p[row, a] = f1 * z[a]
            else:
                f2 = (l + m - 1.0) / (l - m)
                for a in range(n):
                    p[row, a] = f1 * z[a] * p[up1, a] - f2 * r2[a] * p[up2, a]


def e3nn_harmonic_tables(lmax: int) -> dict[str, np.ndarray]:
    """How e3nn's Y_lm(u), u = (x, y, z) ('component'), follows from `solid_harmonics` evaluated
    with polar axis y and azimuthal plane (z, x): Y_lm = scale · P_l|m| · Re (z + ix)^m for m ≥ 0,
    Im (z + ix)^|m| for m < 0. Returns, per k = l² + l + m, (lmax+1)² each: p_row, cs_row (int64)
    and scale (float64), fitted on random points against `monomials_to_sh` (exact to rounding;
    RuntimeError if e3nn's convention were not this one)."""
    points = np.random.default_rng(0).normal(size=(64, 3))
    cs = np.empty((2 * lmax + 1, len(points)))
    p = np.empty(((lmax + 1) * (lmax + 2) // 2, len(points)))
    x, y, z = (np.ascontiguousarray(points[:, i]) for i in range(3))
    solid_harmonics(z, x, y, (points**2).sum(axis=1), lmax, cs, p)
    mono = np.prod(points[:, None, :] ** monomial_exponents(lmax)[None], axis=2)
    p_row, cs_row, scale = (np.zeros((lmax + 1) ** 2, dtype=t) for t in (np.int64, np.int64, float))
    start = 0
    for l, c in enumerate(monomials_to_sh(lmax)):
        e3nn = mono[:, start : start + len(c)] @ c
        start += len(c)
        for m in range(-l, l + 1):
            k = l * l + l + m
            p_row[k], cs_row[k] = l * (l + 1) // 2 + abs(m), m if m >= 0 else lmax - m
            raw = p[p_row[k]] * cs[cs_row[k]]
            scale[k] = raw @ e3nn[:, l + m] / (raw @ raw)
            if np.abs(scale[k] * raw - e3nn[:, l + m]).max() > 1e-12 * np.abs(e3nn).max():
                raise RuntimeError(f"e3nn's Y_lm (l={l}, m={m}) is not a solid harmonic multiple")
    return {"p_row": p_row, "cs_row": cs_row, "scale": scale}


@cached_njit(parallel=True, fastmath=_FASTMATH)
def project_segments(
    xyz: np.ndarray,
    channel: np.ndarray,
    offsets: np.ndarray,
    rcut: float,
    square: bool,
    normsq: np.ndarray,
    radial: np.ndarray,
    k_end: np.ndarray,
    out_index: np.ndarray,
    p_row: np.ndarray,
    cs_row: np.ndarray,
    scale: np.ndarray,
    lmax: int,
    out: np.ndarray,
) -> None:
    """Write the coefficients of every segment into `out` (S, dim) (float32 or float64).

    xyz (A, 3) Å and channel (A,) int64 in [0, C) are grouped by segment: segment s owns atoms
    offsets[s] … offsets[s+1]. normsq (D + 1,): ‖Z‖² = Σ_k normsq[k] T_k(t). radial (J, J, K),
    K = (lmax + 1)²: radial[i, j, k] = cheb[j, (l, n = l + 2i)] for the degree l of k, i.e. the
    coefficient of (n, l, m) is Σ_j radial[i, j, k] S[j, k] for k < k_end[i] (the k of the
    degrees l with an order n = l + 2i ≤ nmax); out_index (C, J, K): its flat index in channel c.
    p_row, cs_row, scale (K,): `e3nn_harmonic_tables`.
    """
    n_seg = len(offsets) - 1
    n_channels, n_cheb, width = out_index.shape
    for chunk in prange((n_seg + _CHUNK - 1) // _CHUNK):
        s0, s1 = chunk * _CHUNK, min(n_seg, (chunk + 1) * _CHUNK)
        size = (offsets[s0 + 1 : s1 + 1] - offsets[s0:s1]).max()
        order = np.empty(size, dtype=np.int64)
        run = np.empty(n_channels + 1, dtype=np.int64)
        geometry = np.empty((8, size))
        basis_a = np.empty((n_cheb, size))
        basis_h = np.empty((size, width))
        cs = np.empty((2 * lmax + 1, size))
        p = np.empty(((lmax + 1) * (lmax + 2) // 2, size))
        moments = np.empty((n_cheb, width))
        total = np.empty(width)
        row = np.empty(out.shape[1])
        for s in range(s0, s1):
            a0, n = offsets[s], offsets[s + 1] - offsets[s]
            _sort_by_channel(channel[a0 : a0 + n], order, run)
            _atom_geometry(xyz, a0, order[:n], rcut, geometry)
            _atom_weights(geometry, n, square, normsq, basis_a)
            ux, uy, uz, rho2 = geometry[0, :n], geometry[1, :n], geometry[2, :n], geometry[3, :n]
            solid_harmonics(uz, ux, uy, rho2, lmax, cs, p)
            for k in range(width):
                pk, ck, sk = p_row[k], cs_row[k], scale[k]
                for a in range(n):
                    basis_h[a, k] = sk * p[pk, a] * cs[ck, a]
            row[:] = 0.0
            for c in range(n_channels):
                if run[c + 1] > run[c]:
                    _moments(basis_a, basis_h, run[c], run[c + 1], k_end, moments)
                    _to_layout(moments, radial, k_end, out_index[c], total, row)
            for i in range(out.shape[1]):
                out[s, i] = row[i]


@cached_njit(fastmath=_FASTMATH)
def _sort_by_channel(channel: np.ndarray, order: np.ndarray, run: np.ndarray) -> None:
    """Counting sort: order[:n] lists the atoms (0 … n−1) channel by channel, channel c in
    order[run[c] : run[c+1]]."""
    run[:] = 0
    for c in channel:
        run[c + 1] += 1
    for c in range(len(run) - 1):
        run[c + 1] += run[c]
    fill = run[:-1].copy()
    for a, c in enumerate(channel):
        order[fill[c]] = a
        fill[c] += 1


@cached_njit(fastmath=_FASTMATH)
def _atom_geometry(
    xyz: np.ndarray, a0: int, order: np.ndarray, rcut: float, geometry: np.ndarray
) -> None:
    """Per atom i of `order` (atom a0 + order[i]), ρ = min(r, rcut) / rcut: geometry[0:3, i] =
    u = x·ρ/r, [3] = ρ², [4] = t = 2ρ² − 1, [5] = 1, or 0 for an atom at the centre (which adds
    nothing). Rows 6 and 7 are left to `_atom_weights`."""
    for i in range(len(order)):
        a = a0 + order[i]
        x, y, z = xyz[a, 0], xyz[a, 1], xyz[a, 2]
        r = np.sqrt(x * x + y * y + z * z)
        rho = min(r, rcut) / rcut
        scale = rho / r if r > 0.0 else 0.0
        geometry[0, i], geometry[1, i], geometry[2, i] = x * scale, y * scale, z * scale
        geometry[3, i] = rho * rho
        geometry[4, i] = 2.0 * rho * rho - 1.0
        geometry[5, i] = 1.0 if r > 0.0 else 0.0


@cached_njit(fastmath=_FASTMATH)
def _atom_weights(
    geometry: np.ndarray, n: int, square: bool, normsq: np.ndarray, basis_a: np.ndarray
) -> None:
    """basis_a[j, a] = w_a T_j(t_a) for the first n atoms of geometry (`_atom_geometry`):
    w = geometry[5] / ‖Z‖² (the normsq series summed by Clenshaw's recurrence in rows 6 and 7) or
    w = geometry[5]; T_(j+1) = 2t T_j − T_(j−1) is linear, so w T_j follows the same recurrence."""
    t, w, b1, b2 = geometry[4], geometry[5], geometry[6], geometry[7]
    if square:
        b1[:n] = 0.0
        b2[:n] = 0.0
        for k in range(len(normsq) - 1, 0, -1):
            c = normsq[k]
            for a in range(n):
                b1[a], b2[a] = c + 2.0 * t[a] * b1[a] - b2[a], b1[a]
        for a in range(n):
            w[a] = w[a] / (normsq[0] + t[a] * b1[a] - b2[a])
    for a in range(n):
        basis_a[0, a] = w[a]
    if basis_a.shape[0] > 1:
        for a in range(n):
            basis_a[1, a] = w[a] * t[a]
    for j in range(2, basis_a.shape[0]):
        for a in range(n):
            basis_a[j, a] = 2.0 * t[a] * basis_a[j - 1, a] - basis_a[j - 2, a]


@cached_njit(fastmath=_FASTMATH)
def _moments(
    basis_a: np.ndarray, basis_h: np.ndarray, b0: int, b1: int, k_end: np.ndarray,
    moments: np.ndarray,
) -> None:  # fmt: skip
    """moments[j, k] = Σ_(b0 ≤ a < b1) basis_a[j, a] basis_h[a, k] for k < k_end[j] (the rest is
    not needed: row j serves the radial orders i ≥ j), four atoms per pass over `moments` (a
    quarter of its loads and stores of one rank-1 update per atom)."""
    moments[:, :] = 0.0
    b = b0
    while b < b1:
        if b + 4 <= b1:
            for j in range(len(k_end)):
                q0, q1, q2, q3 = (
                    basis_a[j, b],
                    basis_a[j, b + 1],
                    basis_a[j, b + 2],
                    basis_a[j, b + 3],
                )
                for k in range(k_end[j]):
                    moments[j, k] += (
                        q0 * basis_h[b, k]
                        + q1 * basis_h[b + 1, k]
                        + q2 * basis_h[b + 2, k]
                        + q3 * basis_h[b + 3, k]
                    )
            b += 4
        else:
            for j in range(len(k_end)):
                q0 = basis_a[j, b]
                for k in range(k_end[j]):
                    moments[j, k] += q0 * basis_h[b, k]
            b += 1


@cached_njit(fastmath=_FASTMATH)
def _to_layout(
    moments: np.ndarray, radial: np.ndarray, k_end: np.ndarray, out_index: np.ndarray,
    total: np.ndarray, row: np.ndarray,
) -> None:  # fmt: skip
    """row[out_index[i, k]] = Σ_(j ≤ i) radial[i, j, k] moments[j, k] for k < k_end[i] (the
    radial function of order i has degree i in t); total: (K,) scratch."""
    for i in range(len(k_end)):
        end = k_end[i]
        total[:end] = 0.0
        for j in range(i + 1):
            for k in range(end):
                total[k] += radial[i, j, k] * moments[j, k]
        for k in range(end):
            row[out_index[i, k]] = total[k]
