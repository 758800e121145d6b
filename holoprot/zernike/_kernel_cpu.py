"""Fused CPU kernel of the Zernike projection (numba), used by `ZernikeBasis.project` on CPU.

Same mathematics as the batched PyTorch path in `zernike.basis` (see its docstrings): per atom
Q_nl(ρ²) = R_nl(ρ)/ρ^l from the even-power coefficients, the 'square' weight 1/‖Z‖², the
monomials M_l(u) of u = ρ·x̂; per (segment, channel) the moments Σ_a w_a Q_nl(a) M_l(a), then the
change of basis C_l to e3nn's real spherical harmonics, Y_l(u) = M_l(u)·C_l. Everything is float64
(the torch path evaluates only the radial part in float64), one segment per parallel iteration
(its atoms' values live in small per-segment arrays; nothing is padded). The moments are summed
four atoms at a time, which quarters the loads and stores of the accumulators, the bottleneck of
one rank-1 update per atom. Compiled on first use and cached by numba (`_util.jit.cached_njit`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from holoprot._util.jit import cached_njit


@cached_njit(parallel=True, fastmath=False)
def project_segments(
    coords: np.ndarray,
    channel: np.ndarray,
    offsets: np.ndarray,
    rcut: float,
    square: bool,
    even: np.ndarray,
    radial_l: np.ndarray,
    mono_exp: np.ndarray,
    mono_start: np.ndarray,
    mono_to_sh: np.ndarray,
    out_index: np.ndarray,
    n_channels: int,
    out: np.ndarray,
) -> None:
    """Add the coefficients of every segment into `out` (S, dim) float64 (zeroed by the caller).

    coords (A, 3) Å and channel (A,) int64 in [0, n_channels) are grouped by segment: segment s
    owns atoms offsets[s] … offsets[s+1]. even (J, n_radial): Q_i(ρ²) = Σ_j even[j, i] ρ^{2j};
    radial_l (n_radial,): degree of radial function i; mono_exp (n_mono, 3): exponents of the
    monomials, degree-major; mono_start (lmax+2,): first monomial of each degree;
    mono_to_sh (lmax+1, max n_mono_l, 2lmax+1): C_l zero-padded; out_index (n_channels,
    n_radial, 2lmax+1): flat output index of (channel, radial function, m + l).
    """
    n_seg = len(offsets) - 1
    n_pow, n_radial = even.shape
    lmax = len(mono_start) - 2
    n_mono = mono_exp.shape[0]
    width = mono_to_sh.shape[1]
    for s in prange(n_seg):
        a0, a1 = offsets[s], offsets[s + 1]
        # per atom: weighted radial values and monomials, counting-sorted by channel
        run = np.zeros(n_channels + 1, dtype=np.int64)
        for a in range(a0, a1):
            run[channel[a] + 1] += 1
        for c in range(n_channels):
            run[c + 1] += run[c]
        fill = run[:n_channels].copy()
        wq = np.zeros((a1 - a0, n_radial))
        mono = np.zeros((a1 - a0, n_mono))
        rho2_pow = np.empty(n_pow)
        q = np.empty(n_radial)
        xp = np.empty(lmax + 1)
        yp = np.empty(lmax + 1)
        zp = np.empty(lmax + 1)
        per_l = np.empty(lmax + 1)
        for a in range(a0, a1):
            row = fill[channel[a]]
            fill[channel[a]] += 1
            x, y, z = coords[a, 0], coords[a, 1], coords[a, 2]
            r = np.sqrt(x * x + y * y + z * z)
            if r == 0.0:
                continue  # its row stays zero
            rho = min(r, rcut) / rcut
            rho2 = rho * rho
            rho2_pow[0] = 1.0
            for j in range(1, n_pow):
                rho2_pow[j] = rho2_pow[j - 1] * rho2
            for i in range(n_radial):
                q[i] = 0.0
            for j in range(n_pow):
                p = rho2_pow[j]
                for i in range(n_radial):
                    q[i] += even[j, i] * p
            weight = 1.0
            if square:
                for l in range(lmax + 1):
                    per_l[l] = 0.0
                for i in range(n_radial):
                    per_l[radial_l[i]] += q[i] * q[i]
                normsq = 0.0
                rl = 1.0
                for l in range(lmax + 1):
                    normsq += (2 * l + 1) * rl * per_l[l]
                    rl *= rho2
                weight = 1.0 / normsq
            for i in range(n_radial):
                wq[row, i] = q[i] * weight
            scale = rho / r
            xp[0] = yp[0] = zp[0] = 1.0
            for d in range(1, lmax + 1):
                xp[d] = xp[d - 1] * x * scale
                yp[d] = yp[d - 1] * y * scale
                zp[d] = zp[d - 1] * z * scale
            for k in range(n_mono):
                mono[row, k] = xp[mono_exp[k, 0]] * yp[mono_exp[k, 1]] * zp[mono_exp[k, 2]]
        # moments Σ_a wq[a, i] · mono[a, k] per channel, four atoms per pass over the
        # accumulators (a quarter of the accumulator loads and stores of one atom at a time)
        moments = np.zeros((n_channels, n_radial, width))
        for c in range(n_channels):
            acc = moments[c]
            b = run[c]
            while b < run[c + 1]:
                step = min(4, run[c + 1] - b)
                for i in range(n_radial):
                    l = radial_l[i]
                    m0 = mono_start[l]
                    n_l = mono_start[l + 1] - m0
                    if step == 4:
                        q0, q1, q2, q3 = wq[b, i], wq[b + 1, i], wq[b + 2, i], wq[b + 3, i]
                        for k in range(n_l):
                            acc[i, k] += (
                                q0 * mono[b, m0 + k]
                                + q1 * mono[b + 1, m0 + k]
                                + q2 * mono[b + 2, m0 + k]
                                + q3 * mono[b + 3, m0 + k]
                            )
                    else:
                        for t in range(step):
                            qt = wq[b + t, i]
                            for k in range(n_l):
                                acc[i, k] += qt * mono[b + t, m0 + k]
                b += step
        for c in range(n_channels):
            for i in range(n_radial):
                l = radial_l[i]
                n_l = mono_start[l + 1] - mono_start[l]
                for m in range(2 * l + 1):
                    total = 0.0
                    for k in range(n_l):
                        total += moments[c, i, k] * mono_to_sh[l, k, m]
                    out[s, out_index[c, i, m]] += total
