"""The protein atoms every affinity feature is computed from, whatever the file's preparation.

PDBbind's preparations differ (see `pdbbind-SOURCES.md`): some files carry all hydrogens, some
polar ones only, some none; some pockets keep waters; PDBbind v2021 rebuilds missing side chains
and loops and marks those atoms with B-factor 999.99. So that none of this changes a feature:

* waters (HOH, WAT, DOD, ...) and hydrogen / deuterium atoms are dropped by
  `holoprot.io.structure.read_structure`;
* rebuilt atoms (PDB B-factor exactly 999.99, mmCIF `B_iso_or_equiv` 999.99) are dropped here,
  so a v2021 file gives the features of the deposited coordinates; a residue left with no atom
  disappears, and a residue whose Cα was rebuilt is no longer a pocket centre. Older
  preparations (e.g. the CASF-2016 SYBYL files, whose B-factor column holds charges) cannot say
  which atoms they modelled, so their atoms are all kept;
* everything else is kept as environment atoms: ions, cofactors, glycans, modified residues.

Ligand atoms: heavy atoms only (`dataset.read_ligand`).
"""

from __future__ import annotations

import os

import numpy as np

from holoprot.errors import InputError
from holoprot.io.structure import Structure, read_structure

REBUILT_B_FACTOR = 999.99
_MARKER = b"999.99"


def rebuilt_atom_keys(path: str | os.PathLike) -> set[tuple[str, int, str, str, str]]:
    """(chain, number, insertion code, residue name, atom name) of every heavy atom with
    B-factor 999.99 in the first model; empty without reading the model when the text has no
    '999.99' at all."""
    from holoprot.io.structure import _parse, _read_text

    data = _read_text(path)
    if _MARKER not in data:
        return set()
    keys: set[tuple[str, int, str, str, str]] = set()
    for chain in _parse(path, data)[0]:
        for residue in chain:
            for atom in residue:
                if abs(atom.b_iso - REBUILT_B_FACTOR) < 5e-3 and not atom.is_hydrogen():
                    seqid = residue.seqid
                    keys.add((chain.name, seqid.num, seqid.icode.strip(), residue.name, atom.name))
    return keys


def subset_atoms(structure: Structure, keep: np.ndarray) -> Structure:
    """The structure with only the atoms where `keep` (N,) bool is True; residues left without
    atoms are removed and the residue table re-indexed."""
    keep = np.asarray(keep, dtype=bool)
    kept_residues = np.unique(structure.residue_index[keep])
    new_index = np.full(structure.n_residues, -1, dtype=np.int32)
    new_index[kept_residues] = np.arange(len(kept_residues), dtype=np.int32)
    return Structure(
        id=structure.id,
        path=structure.path,
        model=structure.model,
        coords=structure.coords[keep],
        element=structure.element[keep],
        atom_name=structure.atom_name[keep],
        residue_index=new_index[structure.residue_index[keep]],
        chain=structure.chain[kept_residues],
        seq_num=structure.seq_num[kept_residues],
        icode=structure.icode[kept_residues],
        res_name=structure.res_name[kept_residues],
        is_amino_acid=structure.is_amino_acid[kept_residues],
        is_standard=structure.is_standard[kept_residues],
        is_hetero=structure.is_hetero[kept_residues],
    )


def read_protein(path: str | os.PathLike) -> tuple[Structure, int]:
    """The structure as featurised (see the module policies) and the number of rebuilt atoms
    dropped."""
    structure = read_structure(path)
    rebuilt = rebuilt_atom_keys(path)
    if not rebuilt:
        return structure, 0
    ri = structure.residue_index
    keep = np.array(
        [
            (structure.chain[r], int(structure.seq_num[r]), structure.icode[r],
             structure.res_name[r], name) not in rebuilt
            for r, name in zip(ri, structure.atom_name, strict=True)
        ],
        dtype=bool,
    )  # fmt: skip
    if not keep.any():
        raise InputError(path, "every heavy atom is marked rebuilt (B-factor 999.99)")
    return subset_atoms(structure, keep), int((~keep).sum())
