"""Residue-centred atom neighbourhoods of a structure as one ragged batch (SPEC §1–2).

* Centres: the atom named ``CA`` with element ``C`` of every amino-acid residue (gemmi's tabulated
  amino acids, standard or not), so Ca²⁺ ions and ligand atoms named CA never become centres.
  Amino-acid residues without such an atom get no neighbourhood and are listed in ``skipped``.
  Neighbourhoods come in residue-table order.
* Environment: every atom of the structure (all chains, ligands, ions) plus optional extra atoms
  whose distance ``d = |x - Cα|`` (float64) satisfies ``d <= radius``. The central Cα and any atom
  with ``d < 1e-6`` Å are removed (they would give NaN directions); the rest of the central
  residue is kept (H-AE convention). Within a neighbourhood, structure atoms come in file order,
  then extras.
* Coordinates are ``x - Cα`` computed in float64 and stored as float32, lab orientation kept.
* No padding: neighbourhoods are rows ``offsets[i]:offsets[i + 1]`` of the flat atom arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from holoprot.io.structure import Structure

__all__ = [
    "MIN_DISTANCE",
    "NeighborhoodSearch",
    "Neighborhoods",
    "centre_atoms",
    "extract_neighborhoods",
    "neighborhoods_around",
]

MIN_DISTANCE = 1e-6
"""Atoms closer than this to the centre (Å) are dropped."""


@dataclass(frozen=True)
class Neighborhoods:
    """Ragged batch of residue neighbourhoods of one structure (M neighbourhoods, T atoms).

    ``residue_index`` (M,) int64 centre residue (row of the Structure residue table);
    ``offsets`` (M+1,) int64, neighbourhood i is rows ``offsets[i]:offsets[i+1]``;
    ``coords`` (T, 3) float32, Å, relative to the centre Cα; ``element`` (T,) '<U2';
    ``atom_index`` (T,) int64 row in the Structure atom arrays, -1 for extra atoms;
    ``skipped`` (K,) int64 amino-acid residues without a Cα; ``radius`` in Å.
    """

    residue_index: np.ndarray
    offsets: np.ndarray
    coords: np.ndarray
    element: np.ndarray
    atom_index: np.ndarray
    skipped: np.ndarray
    radius: float

    @property
    def n_atoms(self) -> np.ndarray:
        """(M,) int64 atoms per neighbourhood."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.residue_index.shape[0])


def centre_atoms(
    structure: Structure,
    *,
    residues: np.ndarray | None = None,
    chains: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cα atoms of the selected amino-acid residues.

    Returns ``(residue_index, atom_index, skipped)``: (M,) int64 residues with a Cα, (M,) int64
    their Cα atom rows (the first one if a residue has several), (K,) int64 amino-acid residues
    of the selection that have none.
    """
    selected = structure.is_amino_acid.copy()
    if residues is not None:
        chosen = np.zeros_like(selected)
        chosen[np.asarray(residues, dtype=np.int64)] = True
        selected &= chosen
    if chains is not None:
        selected &= np.isin(structure.chain.astype(str), np.asarray(list(chains), dtype=str))
    is_ca = (structure.atom_name == "CA") & (structure.element == "C")
    is_ca &= selected[structure.residue_index]
    ca_atoms = np.flatnonzero(is_ca)
    res_idx, first = np.unique(structure.residue_index[ca_atoms], return_index=True)
    res_idx = res_idx.astype(np.int64)
    has_ca = np.zeros_like(selected)
    has_ca[res_idx] = True
    skipped = np.flatnonzero(selected & ~has_ca).astype(np.int64)
    return res_idx, ca_atoms[first].astype(np.int64), skipped


def extract_neighborhoods(
    structure: Structure,
    radius: float = 10.0,
    *,
    residues: np.ndarray | None = None,
    chains: Sequence[str] | None = None,
    extra_coords: np.ndarray | None = None,
    extra_element: np.ndarray | None = None,
) -> Neighborhoods:
    """Atoms within ``radius`` Å of each selected residue's Cα (see module policies).

    Args:
        structure: parsed structure.
        radius: inclusive cut-off in Å.
        residues: residue-table indices allowed as centres (default: all).
        chains: chain ids allowed as centres (default: all).
        extra_coords: (E, 3) Å, environment-only atoms (e.g. a ligand), never centres.
        extra_element: (E,) element symbols of ``extra_coords``.
    """
    if (extra_coords is None) != (extra_element is None):
        raise ValueError("extra_coords and extra_element must be given together")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    env_xyz = np.asarray(structure.coords, dtype=np.float64)
    env_el = np.asarray(structure.element, dtype="<U2")
    if extra_coords is not None:
        extra_xyz = np.asarray(extra_coords, dtype=np.float64).reshape(-1, 3)
        extra_el = np.char.upper(np.asarray(extra_element, dtype="<U2")).reshape(-1)
        if extra_el.shape[0] != extra_xyz.shape[0]:
            raise ValueError("extra_coords and extra_element differ in length")
        env_xyz = np.concatenate([env_xyz, extra_xyz])
        env_el = np.concatenate([env_el, extra_el])

    res_idx, ca_idx, skipped = centre_atoms(structure, residues=residues, chains=chains)
    return neighborhoods_around(
        env_xyz, env_el, res_idx, ca_idx, radius, skipped=skipped, n_own_atoms=structure.n_atoms
    )


def neighborhoods_around(
    env_xyz: np.ndarray,
    env_el: np.ndarray,
    residue_index: np.ndarray,
    centre_index: np.ndarray,
    radius: float,
    *,
    skipped: np.ndarray | None = None,
    n_own_atoms: int | None = None,
) -> Neighborhoods:
    """Neighbourhoods of given centre atoms (the module policies, without choosing the centres).

    Args:
        env_xyz: (N, 3) float64 Å, every environment atom.
        env_el: (N,) element symbols.
        residue_index: (M,) int64 residue of each centre, stored as given.
        centre_index: (M,) int64 row of each centre atom in ``env_xyz`` (dropped from its own
            neighbourhood).
        radius: inclusive cut-off in Å.
        skipped: stored as given (default empty).
        n_own_atoms: rows ``>=`` this are extra atoms (``atom_index`` -1); default none are.
    """
    search = NeighborhoodSearch(env_xyz, env_el, radius, n_own_atoms=n_own_atoms)
    return search.around(residue_index, centre_index, skipped=skipped)


class NeighborhoodSearch:
    """`neighborhoods_around` for centres given a slice at a time: the atoms' grid is built once
    (O(N log N)), then each call costs only its own centres' pairs, so a giant structure's
    residues can go through in chunks; a chunk's neighbourhoods equal those of one call.

    Holds about 40 bytes per environment atom besides ``env_xyz`` (the sorted grid).

    Args:
        env_xyz: (N, 3) float64 Å, every environment atom (kept, not copied).
        env_el: (N,) element symbols.
        radius: inclusive cut-off in Å.
        n_own_atoms: rows ``>=`` this are extra atoms (``atom_index`` -1); default none are.
    """

    def __init__(
        self,
        env_xyz: np.ndarray,
        env_el: np.ndarray,
        radius: float,
        *,
        n_own_atoms: int | None = None,
    ) -> None:
        self.env_xyz = np.asarray(env_xyz, dtype=np.float64)
        self.env_el = np.asarray(env_el)
        self.radius = float(radius)
        self.n_own = len(self.env_xyz) if n_own_atoms is None else n_own_atoms
        self._grid = _Grid(self.env_xyz, self.radius) if len(self.env_xyz) else None

    def around(
        self,
        residue_index: np.ndarray,
        centre_index: np.ndarray,
        *,
        skipped: np.ndarray | None = None,
    ) -> Neighborhoods:
        """Neighbourhoods of the centre atoms ``env_xyz[centre_index]`` (M,) int64, labelled with
        ``residue_index`` (M,) int64; `skipped` is stored as given (default empty)."""
        centre_index = np.asarray(centre_index, dtype=np.int64)
        centres = self.env_xyz[centre_index]
        if self._grid is None or len(centres) == 0:
            nbhd = atom = np.zeros(0, dtype=np.int64)
        else:
            nbhd, atom = self._grid.pairs(centres)
        rel = self.env_xyz[atom] - centres[nbhd]
        dist = np.sqrt(np.einsum("ij,ij->i", rel, rel))
        keep = (dist <= self.radius) & (dist >= MIN_DISTANCE) & (atom != centre_index[nbhd])
        nbhd, atom, rel = nbhd[keep], atom[keep], rel[keep]

        offsets = np.zeros(len(residue_index) + 1, dtype=np.int64)
        np.cumsum(np.bincount(nbhd, minlength=len(residue_index)), out=offsets[1:])
        return Neighborhoods(
            residue_index=np.asarray(residue_index, dtype=np.int64),
            offsets=offsets,
            coords=rel.astype(np.float32),
            element=self.env_el[atom],
            atom_index=np.where(atom < self.n_own, atom, -1).astype(np.int64),
            skipped=np.zeros(0, np.int64) if skipped is None else skipped,
            radius=self.radius,
        )


#: Grid cells per cut-off radius in `_Grid` (cells of radius/2: each centre scans 5×5 columns of
#: 5 cells, 2.5× the volume of its sphere instead of 6.4× with cells of one radius).
_CELLS_PER_RADIUS = 2

#: Centres per chunk in `_Grid.pairs`, so that candidate arrays stay a few tens of MB.
_CENTRE_CHUNK = 2048


class _Grid:
    """Points sorted by the cell of a uniform grid, for radius queries from centres that lie in
    the box [lo, hi] (default: the points' own box).

    No k-d tree: importing scipy.spatial costs ≈ 0.25 s of start-up. Per centre, the (2k+1)²
    columns of 2k+1 cells around it are contiguous key ranges (k = `_CELLS_PER_RADIUS`), found
    with one `searchsorted` each.
    """

    def __init__(
        self,
        points: np.ndarray,
        radius: float,
        lo: np.ndarray | None = None,
        hi: np.ndarray | None = None,
    ) -> None:
        self.reach = radius * (1 + 1e-9) + 1e-9
        k = _CELLS_PER_RADIUS
        self.lo = points.min(axis=0) if lo is None else lo
        hi = points.max(axis=0) if hi is None else hi
        span = float(np.max(hi - self.lo))
        self.cell = max(self.reach / k, span / 2**20)  # ≤ 2^20 cells per axis: no key overflow
        # cells shifted by k so that every neighbour of a centre's cell has coordinates >= 0
        self.dims = np.floor((hi - self.lo) / self.cell).astype(np.int64) + 2 * k + 1
        key = self._keys(self._cells(points))
        self.order = np.argsort(key, kind="stable")
        self.sorted_key = key[self.order]
        self.axes = np.ascontiguousarray(points.T)
        steps = np.arange(-k, k + 1)
        self.dx, self.dy = (a.reshape(-1) for a in np.meshgrid(steps, steps, indexing="ij"))

    def _cells(self, xyz: np.ndarray) -> np.ndarray:
        return np.floor((xyz - self.lo) / self.cell).astype(np.int64) + _CELLS_PER_RADIUS

    def _keys(self, cells: np.ndarray) -> np.ndarray:
        return (cells[:, 0] * self.dims[1] + cells[:, 1]) * self.dims[2] + cells[:, 2]

    def pairs(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centre, point) index pairs, both (P,) int64, with distance <= radius (plus a hair),
        sorted by centre then point."""
        empty = np.zeros(0, dtype=np.int64)
        k, dims = _CELLS_PER_RADIUS, self.dims
        c_cell = self._cells(centres)
        c_axes = np.ascontiguousarray(centres.T)
        found_centre, found_point = [empty], [empty]
        for c0 in range(0, len(centres), _CENTRE_CHUNK):
            cc = c_cell[c0 : c0 + _CENTRE_CHUNK]
            column = (cc[:, None, 0] + self.dx) * dims[1] + (cc[:, None, 1] + self.dy)
            first = np.searchsorted(
                self.sorted_key, column * dims[2] + (cc[:, None, 2] - k), "left"
            )
            last = np.searchsorted(
                self.sorted_key, column * dims[2] + (cc[:, None, 2] + k), "right"
            )
            counts = (last - first).reshape(-1)
            ends = np.cumsum(counts)
            centre = np.repeat(np.arange(c0, c0 + len(cc)).repeat(column.shape[1]), counts)
            at = np.repeat(first.reshape(-1) - (ends - counts), counts) + np.arange(ends[-1])
            point = self.order[at]
            d2 = np.zeros(len(point))
            for axis in range(3):
                d = self.axes[axis][point] - c_axes[axis][centre]
                d2 += d * d
            near = d2 <= self.reach * self.reach
            found_centre.append(centre[near])
            found_point.append(point[near])
        centre, point = np.concatenate(found_centre), np.concatenate(found_point)
        # centres are already ascending: a stable sort of the unique keys runs through in O(P)
        by_pair = np.argsort(centre * len(self.order) + point, kind="stable")
        return centre[by_pair], point[by_pair]


def _pairs_within(
    centres: np.ndarray, points: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """(centre, point) index pairs, both (P,) int64, with distance <= radius (plus a hair),
    sorted by centre then point (`_Grid` over the box of both)."""
    empty = np.zeros(0, dtype=np.int64)
    if len(centres) == 0 or len(points) == 0:
        return empty, empty
    lo = np.minimum(points.min(axis=0), centres.min(axis=0))
    hi = np.maximum(points.max(axis=0), centres.max(axis=0))
    return _Grid(points, radius, lo, hi).pairs(centres)
