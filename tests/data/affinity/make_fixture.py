"""Rebuild the affinity test fixture from public-domain PDB entries shipped in two PyPI sdists.

    pip download --no-binary :all: --no-deps mdanalysistests==2.11.0 biopython==1.88 -d SDISTS
    (unpack both) python tests/data/affinity/make_fixture.py SDISTS

Writes `<id>/<id>_pocket.pdb`, `<id>/<id>_ligand.sdf` and, for 1hvr and 1gbt,
`<id>/<id>_protein.pdb` next to this script. See PROVENANCE.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gemmi
import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds

HERE = Path(__file__).parent
# id, file inside the unpacked sdists, ligand (chain, residue name or None for the whole chain),
# whether to write the protein file too.
COMPLEXES = [
    ("1hvr", "mdanalysistests-2.11.0/MDAnalysisTests/data/1hvr.pdb", ("A", "XK2"), True),
    ("1a28", "mdanalysistests-2.11.0/MDAnalysisTests/data/1a28.pdb.gz", ("A", "STR"), False),
    ("1gbt", "biopython-1.88/Tests/PDB/1GBT.cif", ("A", "GBS"), True),
    ("4zhl", "biopython-1.88/Tests/PDB/4ZHL.cif", ("P", None), False),
]
POCKET_RADIUS = 10.0


def _is_ligand(chain: gemmi.Chain, residue: gemmi.Residue, spec: tuple[str, str | None]) -> bool:
    name = spec[1]
    return chain.name == spec[0] and not residue.is_water() and name in (None, residue.name)


def _ligand_residues(model: gemmi.Model, spec: tuple[str, str | None]) -> list[gemmi.Residue]:
    chain = model[spec[0]]
    found = [r for r in chain if _is_ligand(chain, r, spec)]
    return found if spec[1] is None else found[:1]


def _write_subset(st: gemmi.Structure, keep, path: Path, remark: str) -> None:
    """Write the first model with only the residues for which keep(chain, residue) is true."""
    out = gemmi.Structure()
    out.cell, out.spacegroup_hm = st.cell, st.spacegroup_hm
    model = gemmi.Model("1")
    for chain in st[0]:
        new_chain = gemmi.Chain(chain.name)
        for residue in chain:
            if keep(chain, residue):
                new_chain.add_residue(residue)
        if len(new_chain):
            model.add_chain(new_chain)
    out.add_model(model)
    out.setup_entities()
    body = out.make_pdb_string(gemmi.PdbWriteOptions(minimal=True))
    path.write_text(f"REMARK 250 {remark}\n" + body)


def _write_ligand(atoms: list[gemmi.Atom], path: Path, title: str) -> None:
    mol = Chem.RWMol()
    conformer = Chem.Conformer(len(atoms))
    for i, atom in enumerate(atoms):
        mol.AddAtom(Chem.Atom(atom.element.name))
        conformer.SetAtomPosition(i, (atom.pos.x, atom.pos.y, atom.pos.z))
    mol.AddConformer(conformer, assignId=True)
    rdDetermineBonds.DetermineConnectivity(mol)
    mol.UpdatePropertyCache(strict=False)
    mol.SetProp("_Name", title)
    path.write_text(Chem.MolToMolBlock(mol, kekulize=False) + "$$$$\n")


def build(sdists: Path) -> None:
    for pdb_id, source, spec, with_protein in COMPLEXES:
        st = gemmi.read_structure(str(sdists / source))
        st.remove_hydrogens()
        model = st[0]
        ligand = _ligand_residues(model, spec)
        lig_atoms = [a for r in ligand for a in r]
        lig_xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for a in lig_atoms])
        lig_ids = {(spec[0], r.seqid.num, r.seqid.icode, r.name) for r in ligand}

        def is_lig(chain, residue, lig_ids=lig_ids):
            return (chain.name, residue.seqid.num, residue.seqid.icode, residue.name) in lig_ids

        def near(chain, residue, lig_xyz=lig_xyz, is_lig=is_lig):
            xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for a in residue])
            dist = np.linalg.norm(xyz[:, None, :] - lig_xyz[None, :, :], axis=2)
            return not is_lig(chain, residue) and dist.min() <= POCKET_RADIUS

        folder = HERE / pdb_id
        folder.mkdir(exist_ok=True)
        origin = f"holoprot test fixture from PDB {pdb_id.upper()} ({Path(source).name})"
        _write_subset(
            st,
            near,
            folder / f"{pdb_id}_pocket.pdb",
            f"{origin}: residues with a heavy atom within 10 A of the ligand",
        )
        if with_protein:
            _write_subset(
                st,
                lambda c, r, is_lig=is_lig: not is_lig(c, r),
                folder / f"{pdb_id}_protein.pdb",
                f"{origin}: first model minus the ligand, H removed",
            )
        title = f"{pdb_id} ligand {spec[1] or 'chain ' + spec[0]} heavy atoms; bonds from distances"
        _write_ligand(lig_atoms, folder / f"{pdb_id}_ligand.sdf", title)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
