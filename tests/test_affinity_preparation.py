"""Preparation differences cannot change a feature: waters, hydrogens and rebuilt atoms
(B-factor 999.99, PDBbind v2021's marker) on the real 1hvr complex of tests/data/affinity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from holoprot.affinity import features as feats
from holoprot.affinity.dataset import ComplexFiles, read_ligand
from holoprot.affinity.pocket import pocket_residues
from holoprot.affinity.preparation import read_protein
from holoprot.io.structure import read_structure

FIXTURE = Path(__file__).parent / "data" / "affinity"
PROTEIN = FIXTURE / "1hvr" / "1hvr_protein.pdb"
LIGAND = FIXTURE / "1hvr" / "1hvr_ligand.sdf"


class CoordinateEmbedder:
    """Test double: latent = per-element atom counts and summed distances of a neighbourhood,
    so any added, removed or moved atom changes it."""

    weights_name = "test-double"
    weights_sha256 = "ef" * 32
    latent_dim = 8

    def embed_neighborhoods(self, nbh) -> np.ndarray:
        out = np.zeros((len(nbh), self.latent_dim), dtype=np.float32)
        for i in range(len(nbh)):
            rows = slice(nbh.offsets[i], nbh.offsets[i + 1])
            element, r = nbh.element[rows], np.linalg.norm(nbh.coords[rows], axis=1)
            for j, e in enumerate(("C", "N", "O", "S")):
                out[i, j] = np.sum(element == e)
                out[i, 4 + j] = r[element == e].sum()
        return out


def _atom_line(serial: int, name: str, res: str, chain: str, num: int, xyz, b: float, el: str):
    record = "HETATM" if res == "HOH" else "ATOM  "
    return (
        f"{record}{serial:5d} {name:<4} {res:>3} {chain}{num:4d}    "
        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{1.0:6.2f}{b:6.2f}          {el:>2}\n"
    )


def _atoms(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines(keepends=True) if line.startswith("ATOM")]


def _features(protein: Path) -> dict[str, np.ndarray]:
    table = feats.featurise(
        [ComplexFiles("1hvr", protein, None, (LIGAND,))],
        ["hae", "zernike-l0", "counts"],
        embedder=CoordinateEmbedder(),
    )
    assert not table.failures, table.failures
    return {kind: table.features[kind][0] for kind in table.features}


@pytest.fixture(scope="module")
def pocket_side_chain():
    """Atom lines of 1hvr and the side-chain atom lines of one pocket residue with a side chain
    beyond CB (it stands for a side chain PDBbind v2021 rebuilt)."""
    structure = read_structure(PROTEIN)
    pocket = pocket_residues(structure, read_ligand([LIGAND]).coords, 6.0)
    lines = _atoms(PROTEIN)
    for r in pocket:
        name, chain, num = structure.res_name[r], structure.chain[r], int(structure.seq_num[r])
        side = [
            line
            for line in lines
            if line[17:20] == name and line[21] == chain and int(line[22:26]) == num
            and line[12:16].strip() not in ("N", "CA", "C", "O", "CB")
        ]  # fmt: skip
        if len(side) >= 2:
            return lines, side
    raise AssertionError("no pocket residue with a side chain")


def test_waters_and_hydrogens_change_no_feature(tmp_path, pocket_side_chain):
    lines, _ = pocket_side_chain
    plain = tmp_path / "plain.pdb"
    plain.write_text("".join(lines) + "END\n")
    ligand = read_ligand([LIGAND]).coords
    extra = []
    for line in lines:  # an H on every heavy atom, 1.0 Å away
        x, y, z = float(line[30:38]) + 1.0, float(line[38:46]), float(line[46:54])
        name = ("H" + line[12:16].strip())[:4]
        extra.append(line[:12] + f"{name:<4}" + line[16:30] + f"{x:8.3f}{y:8.3f}{z:8.3f}"
                     + line[54:76] + " H\n")  # fmt: skip
    waters = [  # waters between the protein and the ligand, as PDBbind pockets keep them
        _atom_line(9000 + k, "O", "HOH", "W", k + 1, ligand[k] + [2.0, 1.0, 0.0], 20.0, "O")
        for k in range(0, len(ligand), 3)
    ]
    prepared = tmp_path / "prepared.pdb"
    prepared.write_text("".join(lines + extra) + "".join(waters) + "END\n")
    assert len(read_structure(prepared).coords) == len(read_structure(plain).coords)
    before, after = _features(plain), _features(prepared)
    for kind in before:
        np.testing.assert_array_equal(after[kind], before[kind], err_msg=kind)


def test_rebuilt_atoms_are_dropped(tmp_path, pocket_side_chain):
    """A side chain marked rebuilt (B 999.99) gives the features of the file without it, which
    differ from those of the file with it as observed atoms."""
    lines, side = pocket_side_chain
    missing = tmp_path / "missing.pdb"
    missing.write_text("".join(line for line in lines if line not in side) + "END\n")
    rebuilt = tmp_path / "rebuilt.pdb"
    rebuilt.write_text(
        "".join(line[:60] + "999.99" + line[66:] if line in side else line for line in lines)
        + "END\n"
    )
    observed = tmp_path / "observed.pdb"
    observed.write_text("".join(lines) + "END\n")
    structure, n_dropped = read_protein(rebuilt)
    assert n_dropped == len(side)
    assert len(structure.coords) == len(read_structure(missing).coords)
    base, marked, kept = _features(missing), _features(rebuilt), _features(observed)
    for kind in base:
        np.testing.assert_array_equal(marked[kind], base[kind], err_msg=kind)
        assert not np.array_equal(kept[kind], base[kind]), kind


def test_rebuilt_residue_with_its_alpha_carbon_is_no_pocket_centre(tmp_path, pocket_side_chain):
    lines, side = pocket_side_chain
    key = side[0][17:26]
    rebuilt = tmp_path / "rebuilt.pdb"
    rebuilt.write_text(
        "".join(line[:60] + "999.99" + line[66:] if line[17:26] == key else line for line in lines)
        + "END\n"
    )
    structure, _ = read_protein(rebuilt)
    plain = tmp_path / "plain.pdb"
    plain.write_text("".join(lines) + "END\n")
    full = read_structure(plain)
    assert structure.n_residues == full.n_residues - 1
    gone = (key[4], int(key[5:9]))
    assert gone not in set(zip(structure.chain, structure.seq_num.tolist(), strict=True))
