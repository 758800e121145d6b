"""The numba CPU kernel of the Zernike projection against a slow direct evaluation, and its tables.

The direct evaluation sums Z_nlm(x) = R_nl(ρ)·Y_lm(x̂) atom by atom, with R_nl from
`radial_polynomial_coefficients` (its power series, summed in extended precision) and Y_lm from
e3nn itself: it shares none of the kernel's Chebyshev series, solid-harmonic recurrence, moment
sums or index tables. Tolerance, relative to the largest coefficient: measured agreement is
4e-14 at the defaults and 5e-13 at lmax 11 (float64 rounding of the recurrences), so 1e-11. The
power series needs the extended precision: its coefficients reach ~10⁷ against values ~10, so in
float64 it is itself off by ~10⁻¹⁰ near ρ = 1 (where long double is plain float64, as on some
ARM platforms, the bound is 1e-9).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from e3nn import o3

from holoprot.io.structure import read_structure
from holoprot.zernike._kernel_cpu import e3nn_harmonic_tables, solid_harmonics
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import extract_neighborhoods
from holoprot.zernike.radial import chebyshev_tables, radial_polynomial_coefficients

TOLERANCE = 1e-11 if np.finfo(np.longdouble).eps < 1e-18 else 1e-9
BASES = [
    ZernikeBasis(),
    ZernikeBasis(lmax=3, nmax=7, rcut=6.0, channels=("C", "O")),
    ZernikeBasis(lmax=2, nmax=5, rcut=12.0, normalization=None),
    ZernikeBasis(lmax=0, nmax=0),
    ZernikeBasis(lmax=11, nmax=13, rcut=8.0, channels=("N", "SE", "C")),
]


def _direct(basis: ZernikeBasis, coords: np.ndarray, element: np.ndarray) -> np.ndarray:
    """Coefficients of one neighbourhood, (dim,) float64, summed atom by atom."""
    channel = basis.channel_index(element)
    r = np.linalg.norm(coords, axis=1)
    keep = (channel >= 0) & (r > 0)  # an atom at the centre adds nothing
    rho, unit, channel = np.minimum(r[keep], basis.rcut) / basis.rcut, coords[keep], channel[keep]
    sh = [
        o3.spherical_harmonics(l, torch.as_tensor(unit), True, normalization="component").numpy()
        for l in range(basis.lmax + 1)
    ]
    columns = []  # one channel's basis functions, in the layout's (l, n, m) order
    for l in range(basis.lmax + 1):
        for n in range(l, basis.nmax + 1, 2):
            coeffs = radial_polynomial_coefficients(n, l)[::-1].astype(np.longdouble)
            radial = np.polyval(coeffs, rho.astype(np.longdouble)).astype(np.float64)
            columns.append(radial[:, None] * sh[l])
    z = np.concatenate(columns, axis=1)
    if basis.normalization == "square":
        z = z / np.sum(z**2, axis=1, keepdims=True)
    out = np.zeros(basis.dim)
    layout_channel = basis.layout()["channel"]
    for c in range(len(basis.channels)):
        out[layout_channel == c] = z[channel == c].sum(axis=0)
    return out


def _neighbourhoods(basis: ZernikeBasis, rng: np.random.Generator) -> list:
    """(coords, element) of a few random neighbourhoods: atoms in a ball of 1.2·rcut (some beyond
    rcut), one at the centre, one on each axis, and an empty one."""
    symbols = np.array(["C", "N", "O", "S", "H", "SE", "o"])
    out = []
    for size in (1, 40, 160):
        coords = rng.normal(size=(size, 3))
        coords *= (
            1.2
            * basis.rcut
            * rng.random((size, 1)) ** (1 / 3)
            / np.linalg.norm(coords, axis=1)[:, None]
        )
        out.append((coords, rng.choice(symbols, size=size)))
    axes = np.vstack([np.zeros(3), 3.0 * np.eye(3), -0.5 * basis.rcut * np.eye(3)])
    out.append((axes, np.array(["C", "N", "O", "S", "C", "N", "O"])))
    out.append((np.zeros((0, 3)), np.array([], dtype="<U2")))
    return out


@pytest.mark.parametrize("basis", BASES, ids=lambda b: f"l{b.lmax}n{b.nmax}{b.normalization}")
def test_kernel_matches_direct_evaluation(basis: ZernikeBasis) -> None:
    parts = _neighbourhoods(basis, np.random.default_rng(basis.lmax * 100 + basis.nmax))
    coords = np.concatenate([c for c, _ in parts])
    element = np.concatenate([e for _, e in parts])
    segment = np.repeat(np.arange(len(parts)), [len(c) for c, _ in parts])
    channel = basis.channel_index(element)
    keep = channel >= 0
    ours = basis.project_arrays(coords[keep], channel[keep], segment[keep], len(parts))
    for k, (c, e) in enumerate(parts):
        expected = _direct(basis, c, e)
        scale = max(np.abs(expected).max(), 1e-300)
        assert np.abs(ours[k] - expected).max() <= TOLERANCE * scale, k
    assert np.all(ours[-1] == 0)
    # float32 output: the float64 result rounded once
    ours32 = basis.project_arrays(
        coords[keep], channel[keep], segment[keep], len(parts), np.float32
    )
    assert ours32.dtype == np.float32
    np.testing.assert_array_equal(ours32, ours.astype(np.float32))


def test_project_neighborhoods_backends_agree(structures_dir) -> None:
    """The numba path of `project_neighborhoods` (NumPy all the way) against the torch backend on a
    real structure's neighbourhoods, float64; and `coefficients` is its float32 rounding.
    The backends differ by the power vs Chebyshev evaluation of the radial polynomials: 1e-10."""
    basis = ZernikeBasis()
    nbh = extract_neighborhoods(read_structure(structures_dir / "1a8o.pdb"), basis.rcut)
    fused = basis.project_neighborhoods(nbh, torch.float64, backend="numba").numpy()
    tensor = basis.project_neighborhoods(nbh, torch.float64, backend="torch").numpy()
    assert fused.shape == (len(nbh), basis.dim)
    assert np.abs(fused - tensor).max() <= 1e-10 * np.abs(tensor).max()
    np.testing.assert_array_equal(basis.coefficients(nbh), fused.astype(np.float32))


@pytest.mark.parametrize("lmax, nmax", [(6, 20), (3, 7), (11, 14)])
def test_chebyshev_tables_are_the_power_series(lmax: int, nmax: int) -> None:
    """Both series evaluated exactly (rationals) at several ρ²: they differ only by the one
    rounding of each Chebyshev coefficient, ≤ 2⁻⁵² relative to Σ|c_k|."""
    basis = ZernikeBasis(lmax=lmax, nmax=nmax)
    even, radial_l = basis._tables["even_coeffs"], basis._tables["radial_l"]
    cheb, normsq = chebyshev_tables(even, radial_l)
    for s in (Fraction(0), Fraction(1, 7), Fraction(1, 2), Fraction(7, 9), Fraction(1)):
        t = 2 * s - 1
        q_power = [sum(Fraction(c) * s**j for j, c in enumerate(col)) for col in even.T]
        q_cheb = [_clenshaw(col, t) for col in cheb.T]
        for qp, qc, col in zip(q_power, q_cheb, cheb.T, strict=True):
            assert abs(qp - qc) <= 2**-52 * sum(abs(Fraction(c)) for c in col)
        exact = sum(
            (2 * l + 1) * s**l * q**2 for l, q in zip(radial_l.tolist(), q_power, strict=True)
        )
        assert abs(_clenshaw(normsq, t) - exact) <= 2**-52 * sum(abs(Fraction(c)) for c in normsq)


def _clenshaw(coeffs: np.ndarray, t: Fraction) -> Fraction:
    """Σ_k coeffs[k] T_k(t), exactly."""
    b1 = b2 = Fraction(0)
    for c in coeffs[:0:-1]:
        b1, b2 = Fraction(c) + 2 * t * b1 - b2, b1
    return Fraction(coeffs[0]) + t * b1 - b2


def test_harmonic_tables_give_e3nn_harmonics() -> None:
    """scale · P_l|m| · Re/Im (z + ix)^|m| of `solid_harmonics` with polar axis y is e3nn's
    Y_lm(u) (normalize=False, 'component') for every u, up to lmax 11: 1e-12 relative."""
    lmax = 11
    tables = e3nn_harmonic_tables(lmax)
    points = np.random.default_rng(11).normal(size=(50, 3)) * 0.6
    cs = np.empty((2 * lmax + 1, len(points)))
    p = np.empty(((lmax + 1) * (lmax + 2) // 2, len(points)))
    x, y, z = (np.ascontiguousarray(points[:, i]) for i in range(3))
    solid_harmonics(z, x, y, np.sum(points**2, axis=1), lmax, cs, p)
    ours = tables["scale"] * p[tables["p_row"]].T * cs[tables["cs_row"]].T
    expected = o3.spherical_harmonics(
        list(range(lmax + 1)), torch.as_tensor(points), False, normalization="component"
    ).numpy()
    assert np.abs(ours - expected).max() <= 1e-12 * np.abs(expected).max()
