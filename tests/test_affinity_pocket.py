"""Pocket selection on real complexes (tests/data/affinity) against a brute-force distance loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from holoprot.affinity.dataset import read_ligand
from holoprot.affinity.pocket import pocket_residues
from holoprot.io.structure import read_structure

FIXTURE = Path(__file__).parent / "data" / "affinity"


def brute_force_pocket(structure, ligand_coords, cutoff):
    """Residues (amino acids) with an atom named CA, element C, within cutoff of a ligand atom."""
    chosen = set()
    for atom in range(structure.n_atoms):
        residue = structure.residue_index[atom]
        if not structure.is_amino_acid[residue]:
            continue
        if structure.atom_name[atom] != "CA" or structure.element[atom] != "C":
            continue
        for point in ligand_coords:
            if np.sqrt(np.sum((structure.coords[atom] - point) ** 2)) <= cutoff:
                chosen.add(int(residue))
                break
    return sorted(chosen)


@pytest.mark.parametrize(
    "pdb_id, kind",
    [("1hvr", "protein"), ("1gbt", "protein"), ("4zhl", "pocket"), ("1a28", "pocket")],
)
@pytest.mark.parametrize("cutoff", [4.5, 6.0, 8.0])
def test_pocket_equals_brute_force(pdb_id, kind, cutoff):
    structure = read_structure(FIXTURE / pdb_id / f"{pdb_id}_{kind}.pdb")
    ligand = read_ligand([FIXTURE / pdb_id / f"{pdb_id}_ligand.sdf"])
    found = pocket_residues(structure, ligand.coords, cutoff)
    assert found.dtype == np.int64
    assert list(found) == brute_force_pocket(structure, ligand.coords, cutoff)
    assert len(found) > 0


def test_pocket_from_protein_and_pocket_file_agree():
    """A residue with Cα ≤ 6 Å of the ligand is whole in the 10 Å pocket file: same pocket."""
    ligand = read_ligand([FIXTURE / "1hvr" / "1hvr_ligand.sdf"])

    def residue_ids(path):
        structure = read_structure(path)
        rows = pocket_residues(structure, ligand.coords, 6.0)
        return [
            (structure.chain[r], int(structure.seq_num[r]), structure.res_name[r]) for r in rows
        ]

    from_protein = residue_ids(FIXTURE / "1hvr" / "1hvr_protein.pdb")
    assert from_protein == residue_ids(FIXTURE / "1hvr" / "1hvr_pocket.pdb")
    assert ("A", 25, "ASP") in from_protein and ("B", 25, "ASP") in from_protein  # catalytic Asp


def test_calcium_ion_is_never_a_pocket_residue():
    """1gbt has a Ca2+ (atom CA, element CA); only amino-acid Cα atoms count."""
    structure = read_structure(FIXTURE / "1gbt" / "1gbt_protein.pdb")
    calcium = np.flatnonzero(structure.element == "CA")
    assert len(calcium) == 1
    rows = pocket_residues(structure, structure.coords[calcium], 8.0)
    assert structure.residue_index[calcium[0]] not in rows


def test_empty_inputs_and_bad_cutoff():
    structure = read_structure(FIXTURE / "1a28" / "1a28_pocket.pdb")
    assert len(pocket_residues(structure, np.zeros((0, 3)), 6.0)) == 0
    far = structure.coords.mean(axis=0, keepdims=True) + 1000.0
    assert len(pocket_residues(structure, far, 6.0)) == 0
    with pytest.raises(ValueError):
        pocket_residues(structure, far, 0.0)
