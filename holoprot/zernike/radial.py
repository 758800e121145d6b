"""Radial part of the 3D Zernike functions: polynomial coefficients of R_nl, in float64.

    R_nl(ρ) = (−1)^k √(2n+3) binom(k+l, k) ρ^l ₂F₁(−k, (n+l+3)/2; l+3/2; ρ²),  k = (n − l)/2.

Reference compatibility (Holographic-(V)AE, `shared/reference/SPEC.md` §3): the radial constant
is binom(k + l, k), the reference's floor-division binomial, rather than the orthonormal
binom(k + l + ½, k). The basis is therefore orthogonal but not normalised on ∫₀¹ R R' ρ² dρ. We
keep it on purpose: pretrained weights and the input-normalising constant are tied to it. The
coefficients stay float64 (the degree-20 polynomials cancel badly in float32), like the reference.

`chebyshev_tables` rewrites the same polynomials, exactly, in Chebyshev polynomials of
t = 2ρ² − 1 for the CPU kernel: their coefficients are at most ~3·10³ where the powers of ρ² need
~10⁷ (at nmax 20), so evaluating them loses about three digits fewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb, sqrt

import numpy as np


def _pochhammer(a: float, j: int) -> float:
    out = 1.0
    for i in range(j):
        out *= a + i
    return out


def radial_polynomial_coefficients(n: int, l: int) -> np.ndarray:
    """Coefficients c_p of R_nl(ρ) = Σ_p c_p ρ^p, p = 0 … n; float64, shape (n + 1,).

    ₂F₁(−k, b; c; ρ²) terminates after k + 1 terms: Σ_j (−k)_j (b)_j / ((c)_j j!) ρ^{2j}.
    """
    if n < l or (n - l) % 2:
        raise ValueError(f"no Zernike radial function for n={n}, l={l}")
    k = (n - l) // 2
    b, c = (n + l + 3) / 2, l + 1.5
    front = (-1) ** k * sqrt(2 * n + 3) * comb(k + l, k)
    coeffs = np.zeros(n + 1)
    for j in range(k + 1):
        term = _pochhammer(-k, j) * _pochhammer(b, j) / (_pochhammer(c, j) * _pochhammer(1.0, j))
        coeffs[l + 2 * j] = front * term
    return coeffs


def radial_tables(
    radial_l: np.ndarray, radial_n: np.ndarray, nmax: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient tables of the radial functions i = (radial_l[i], radial_n[i]), float64.

    Returns:
        powers (nmax + 1, n_radial): R_i(ρ) = Σ_p powers[p, i] ρ^p (a transposed view).
        even (nmax // 2 + 1, n_radial): Q_i(ρ²) = R_i(ρ) / ρ^l = Σ_j even[j, i] ρ^{2j}.
    """
    rows = np.zeros((len(radial_n), nmax + 1))
    for i, (n, l) in enumerate(zip(radial_n, radial_l, strict=True)):
        rows[i, : n + 1] = radial_polynomial_coefficients(int(n), int(l))
    even = np.zeros((len(radial_l), nmax // 2 + 1))
    for i, l in enumerate(radial_l):
        even[i, : (nmax - l) // 2 + 1] = rows[i, l::2]
    return rows.T, even.T.copy()


def _chebyshev_of_powers(power: Sequence[int], bits: int) -> np.ndarray:
    """c_k with Σ_j (power[j] / 2^bits) s^j = Σ_k c_k T_k(t), s = (1 + t) / 2, in exact integer
    arithmetic rounded once to float64: s^j = 2^−j Σ_i binom(j, i) t^i and
    t^i = 2^(1−i) Σ_r binom(i, r) T_{i−2r}, the T_0 term halved; every term is scaled by 2^extra
    to stay an integer."""
    extra = 2 * len(power)
    out = [0] * len(power)
    for j, a in enumerate(power):
        for i in range(j + 1):
            for r in range(i // 2 + 1):
                shift = extra + 1 - j - i - (2 * r == i)
                out[i - 2 * r] += (a * comb(j, i) * comb(i, r)) << shift
    return np.array([c / (1 << (bits + extra)) for c in out])


def chebyshev_tables(even: np.ndarray, radial_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The polynomials of `radial_tables`' `even` table and the 'square' normaliser in Chebyshev
    polynomials T_k(t), t = 2ρ² − 1: converted exactly from the float64 power coefficients (as
    integers over a common power of two) and rounded once; float64.

    Returns:
        cheb (J, n_radial): Q_i(ρ²) = Σ_j cheb[j, i] T_j(t), J = even.shape[0].
        normsq (D + 1,): ‖Z‖² = Σ_l (2l + 1) ρ^2l Σ_(i of degree l) Q_i(ρ²)², over one channel's
            basis functions, = Σ_k normsq[k] T_k(t); D ≤ nmax is its degree in ρ².
    """
    ratios = [float(x).as_integer_ratio() for x in even.ravel()]
    bits = max(d.bit_length() - 1 for _, d in ratios)  # every denominator is a power of two
    exact = np.array([n << (bits - d.bit_length() + 1) for n, d in ratios], dtype=object)
    exact = exact.reshape(even.shape)
    cheb = np.stack([_chebyshev_of_powers(list(col), bits) for col in exact.T], axis=1)
    total = [0] * (2 * even.shape[0] + int(np.max(radial_l, initial=0)))
    for col, l in zip(exact.T, radial_l, strict=True):
        for j1, c1 in enumerate(col):
            for j2, c2 in enumerate(col):
                total[j1 + j2 + int(l)] += (2 * int(l) + 1) * c1 * c2
    while len(total) > 1 and total[-1] == 0:
        total.pop()
    return cheb, _chebyshev_of_powers(total, 2 * bits)
