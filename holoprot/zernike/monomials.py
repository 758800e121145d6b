"""Monomials of degree ≤ lmax and the change of basis to e3nn's real spherical harmonics.

e3nn's Y_l ('component' normalisation) are homogeneous polynomials of degree l, so
Y_l(u) = M_l(u) · C_l for every u ∈ ℝ³, with M_l the (l+1)(l+2)/2 monomials x^a y^b z^c of
degree l and C_l a constant ((l+1)(l+2)/2, 2l+1) float64 matrix.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: `solve_monomials_to_sh(SH_TABLE_LMAX)` as solved once and shipped, so that building a basis
#: needs neither torch nor e3nn (tests/test_startup.py checks it against a fresh solve).
SH_TABLE = Path(__file__).parents[1] / "data" / "sh_monomials.npz"
SH_TABLE_LMAX = 11


def monomial_exponents(lmax: int) -> np.ndarray:
    """Exponents (a, b, c) of the monomials x^a y^b z^c of degree 0…lmax, (n_monomials, 3) int,
    in the order `monomials` builds them: degree d = x·(degree d−1), y·(its x-free tail), z^d."""
    degrees = [[(0, 0, 0)]]
    for d in range(1, lmax + 1):
        prev = degrees[-1]
        x_part = [(a + 1, b, c) for a, b, c in prev]
        y_part = [(a, b + 1, c) for a, b, c in prev[-d:]]
        degrees.append(x_part + y_part + [(0, 0, d)])
    return np.array([e for deg in degrees for e in deg])


def monomials(u: torch.Tensor, lmax: int) -> torch.Tensor:
    """All monomials of degree ≤ lmax of the rows of u: (A, 3) → (A, n_monomials), in the
    order of `monomial_exponents`."""
    import torch

    x, y, z = u[:, 0:1], u[:, 1:2], u[:, 2:3]
    degrees = [torch.ones_like(x)]
    zd = torch.ones_like(z)
    for d in range(1, lmax + 1):
        prev = degrees[-1]
        zd = zd * z
        degrees.append(torch.cat([x * prev, y * prev[:, -d:], zd], dim=1))
    return torch.cat(degrees, dim=1)


@cache
def _shipped_monomials_to_sh() -> tuple[np.ndarray, ...]:
    with np.load(SH_TABLE, allow_pickle=False) as table:
        return tuple(table[f"l{l}"] for l in range(SH_TABLE_LMAX + 1))


def monomials_to_sh(lmax: int) -> list[np.ndarray]:
    """`solve_monomials_to_sh(lmax)`, from the shipped table up to degree SH_TABLE_LMAX."""
    if lmax <= SH_TABLE_LMAX:
        return list(_shipped_monomials_to_sh()[: lmax + 1])
    return solve_monomials_to_sh(lmax)


def solve_monomials_to_sh(lmax: int) -> list[np.ndarray]:
    """Per l the matrix C_l ((l+1)(l+2)/2, 2l+1), float64, with e3nn's Y_l(u) = M_l(u) · C_l for
    every u ∈ ℝ³, M_l the degree-l monomials.

    C_l is solved by least squares on random points; it is exact to rounding because e3nn's Y_l
    are homogeneous polynomials of degree l (checked here to 1e-10).
    """
    import torch

    from holoprot._util.e3nn import o3

    points = torch.as_tensor(np.random.default_rng(0).normal(size=(256, 3)))
    mono = monomials(points, lmax).numpy()
    mats, start = [], 0
    for l in range(lmax + 1):
        n = (l + 1) * (l + 2) // 2
        y = o3.spherical_harmonics(l, points, normalize=False, normalization="component").numpy()
        c, *_ = np.linalg.lstsq(mono[:, start : start + n], y, rcond=None)
        if np.abs(mono[:, start : start + n] @ c - y).max() > 1e-10 * max(1.0, np.abs(y).max()):
            raise RuntimeError(f"spherical harmonics of degree {l} are not homogeneous polynomials")
        mats.append(c)
        start += n
    return mats
