"""The flat coefficient layout of a Zernike basis: which (l, channel, n, m) each coefficient is.

Indices, as the reference's (Holographic-(V)AE, `shared/reference/SPEC.md` §3):

- 0 ≤ l ≤ lmax; l ≤ n ≤ nmax with n − l even, so K_l = (nmax − l) // 2 + 1 radial orders per l;
  −l ≤ m ≤ l; channels c = 0 … C − 1.
- Radial functions (the columns of every radial table): l-major, then n ascending.
- Flat vector: l-major → channel → n ascending → m ascending, i.e.
  index(l, c, n, m) = O_l + (c · K_l + (n − l)/2) · (2l + 1) + (m + l),
  O_l = Σ_{l' < l} C · K_l' · (2l' + 1). Each channel, read alone, is in (l, n, m) order.
- As e3nn irreps, degree l is C · K_l copies of 'le' (all even parity).

At lmax 6, nmax 20 and 4 channels: 44 radial functions, 427 coefficients per channel, 1708 in
all, irreps 44x0e+40x1e+40x2e+36x3e+36x4e+32x5e+32x6e.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Index = int | np.ndarray


@dataclass(frozen=True, eq=False)
class ZernikeLayout:
    """Index tables of the flat layout; every array is int64.

    Attributes:
        n_per_l: K_l, radial orders per degree, (lmax + 1,).
        l_offsets: O_l, first flat index of degree l, (lmax + 1,).
        radial_l, radial_n: degree and order of each radial function, (n_radial,).
        l, channel, n, m: the indices of each flat coefficient, (dim,).
        irreps: e3nn irreps string of the flat vector.
    """

    n_per_l: np.ndarray
    l_offsets: np.ndarray
    radial_l: np.ndarray
    radial_n: np.ndarray
    l: np.ndarray
    channel: np.ndarray
    n: np.ndarray
    m: np.ndarray
    irreps: str

    @classmethod
    def build(cls, lmax: int, nmax: int, n_channels: int) -> ZernikeLayout:
        """The layout for 0 ≤ lmax ≤ nmax and n_channels ≥ 1 element channels."""
        ls = np.arange(lmax + 1)
        n_per_l = (nmax - ls) // 2 + 1
        block = n_channels * n_per_l * (2 * ls + 1)
        columns = []
        for l in ls:
            c, n, m = np.meshgrid(
                np.arange(n_channels),
                np.arange(l, nmax + 1, 2),
                np.arange(-l, l + 1),
                indexing="ij",
            )
            columns.append(np.stack([np.full(c.size, l), c.ravel(), n.ravel(), m.ravel()]))
        l, channel, n, m = np.concatenate(columns, axis=1)
        return cls(
            n_per_l=n_per_l,
            l_offsets=np.cumsum(block) - block,
            radial_l=np.repeat(ls, n_per_l),
            radial_n=np.concatenate([np.arange(l, nmax + 1, 2) for l in ls]),
            l=l,
            channel=channel,
            n=n,
            m=m,
            irreps="+".join(f"{n_channels * k}x{l}e" for l, k in enumerate(n_per_l)),
        )

    @property
    def dim(self) -> int:
        """Length of the flat vector."""
        return len(self.l)

    def index(self, l: Index, channel: Index, n: Index, m: Index) -> Index:
        """Flat index of (l, channel, n, m): ints or broadcasting int arrays (no range checks)."""
        return self.l_offsets[l] + (channel * self.n_per_l[l] + (n - l) // 2) * (2 * l + 1) + m + l
