"""Radial part of the 3D Zernike functions: polynomial coefficients of R_nl, in float64.

    R_nl(ρ) = (−1)^k √(2n+3) binom(k+l, k) ρ^l ₂F₁(−k, (n+l+3)/2; l+3/2; ρ²),  k = (n − l)/2.

Reference compatibility (Holographic-(V)AE, `shared/reference/SPEC.md` §3): the radial constant
is binom(k + l, k), the reference's floor-division binomial, rather than the orthonormal
binom(k + l + ½, k). The basis is therefore orthogonal but not normalised on ∫₀¹ R R' ρ² dρ. We
keep it on purpose: pretrained weights and the input-normalising constant are tied to it. The
coefficients stay float64 (the degree-20 polynomials cancel badly in float32), like the reference.
"""

from __future__ import annotations

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
