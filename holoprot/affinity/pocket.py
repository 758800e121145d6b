"""Binding-pocket residues: amino acids whose Cα lies within a cutoff of any ligand heavy atom.

This is the ATOM3D LBA rule used by the reference (SPEC §6: atoms within 6 Å of the ligand, then
rows named CA with element C). Cα atoms are those of `holoprot.zernike.neighborhoods.centre_atoms`
(atom CA, element C, amino-acid residue), so Ca²⁺ ions never count. The cutoff is inclusive.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from holoprot.io.structure import Structure
from holoprot.zernike.neighborhoods import centre_atoms

DEFAULT_CUTOFF = 6.0


def pocket_residues(
    structure: Structure, ligand_coords: np.ndarray, cutoff: float = DEFAULT_CUTOFF
) -> np.ndarray:
    """(P,) int64 sorted residue-table rows of the pocket residues.

    Args:
        structure: the protein (or pocket) structure.
        ligand_coords: (L, 3) Å ligand heavy-atom coordinates, same frame as `structure`.
        cutoff: Å, a residue is in the pocket when ``min |Cα − ligand atom| <= cutoff``.
    """
    if not cutoff > 0:
        raise ValueError(f"pocket cutoff must be positive, got {cutoff}")
    ligand_coords = np.asarray(ligand_coords, dtype=np.float64).reshape(-1, 3)
    residues, ca_atoms, _ = centre_atoms(structure)
    if len(ligand_coords) == 0 or len(residues) == 0:
        return np.zeros(0, dtype=np.int64)
    nearest, _ = cKDTree(ligand_coords).query(structure.coords[ca_atoms], k=1)
    return np.sort(residues[nearest <= cutoff]).astype(np.int64)
