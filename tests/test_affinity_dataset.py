"""Complex discovery (PDBbind layout, manifest, pairs) and RDKit ligand reading with fallbacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from holoprot.affinity.dataset import (
    discover,
    join_labels,
    parse_pair,
    read_ligand,
    read_manifest,
)
from holoprot.errors import InputError

FIXTURE = Path(__file__).parent / "data" / "affinity"

# A carbon with five carbon neighbours: RDKit refuses to sanitise it (valence 5).
PENTAVALENT_SDF = """bad
     RDKit          3D

  6  5  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0
    1.5000    0.0000    0.0000 C   0  0
   -1.5000    0.0000    0.0000 C   0  0
    0.0000    1.5000    0.0000 C   0  0
    0.0000   -1.5000    0.0000 C   0  0
    0.0000    0.0000    1.5000 C   0  0
  1  2  1  0
  1  3  1  0
  1  4  1  0
  1  5  1  0
  1  6  1  0
M  END
$$$$
"""

# Ethanol with its hydrogens, TRIPOS mol2.
ETHANOL_MOL2 = """@<TRIPOS>MOLECULE
ethanol
 9 8 0 0 0
SMALL
NO_CHARGES

@<TRIPOS>ATOM
      1 C1    -0.0010  -0.0100   0.0000 C.3   1 LIG  0.0
      2 C2     1.5110  -0.0100   0.0000 C.3   1 LIG  0.0
      3 O1     1.9900   1.3300   0.0000 O.3   1 LIG  0.0
      4 H1    -0.3900   1.0100   0.0000 H     1 LIG  0.0
      5 H2    -0.3900  -0.5200   0.8800 H     1 LIG  0.0
      6 H3    -0.3900  -0.5200  -0.8800 H     1 LIG  0.0
      7 H4     1.8900  -0.5200   0.8800 H     1 LIG  0.0
      8 H5     1.8900  -0.5200  -0.8800 H     1 LIG  0.0
      9 H6     2.9500   1.3300   0.0000 H     1 LIG  0.0
@<TRIPOS>BOND
     1     1     2    1
     2     2     3    1
     3     1     4    1
     4     1     5    1
     5     1     6    1
     6     2     7    1
     7     2     8    1
     8     3     9    1
"""


def test_discover_fixture_layout():
    complexes, failures = discover(FIXTURE)
    assert failures == []
    assert [c.id for c in complexes] == ["1a28", "1gbt", "1hvr", "4zhl"]
    by_id = {c.id: c for c in complexes}
    assert by_id["1hvr"].structure_file.name == "1hvr_protein.pdb"  # protein preferred
    assert by_id["1a28"].structure_file.name == "1a28_pocket.pdb"  # pocket otherwise
    assert by_id["1hvr"].ligands == (FIXTURE / "1hvr" / "1hvr_ligand.sdf",)
    assert all(c.label is None for c in complexes)


def test_discover_reports_incomplete_folders(tmp_path):
    shutil.copytree(FIXTURE / "1a28", tmp_path / "1a28")
    (tmp_path / "2abc").mkdir()
    (tmp_path / "2abc" / "2abc_ligand.sdf").write_text(PENTAVALENT_SDF)
    (tmp_path / "3abc").mkdir()
    shutil.copy(FIXTURE / "1a28" / "1a28_pocket.pdb", tmp_path / "3abc" / "3abc_pocket.pdb")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "b@d_ligand.sdf").write_text(PENTAVALENT_SDF)
    complexes, failures = discover(tmp_path)
    assert [c.id for c in complexes] == ["1a28"]
    problems = {f.id: f.problem for f in failures}
    assert problems["2abc"] == "no protein or pocket file"
    assert problems["3abc"] == "no ligand file (.sdf or .mol2)"
    assert "invalid complex id" in problems["b@d"]


def test_manifest_paths_labels_splits_and_failures(tmp_path):
    shutil.copytree(FIXTURE / "1hvr", tmp_path / "files" / "1hvr")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,protein,ligand,label,split\n"
        "HIV_1,files/1hvr/1hvr_protein.pdb,files/1hvr/1hvr_ligand.sdf,9.51,train\n"
        "gone,files/none.pdb,files/1hvr/1hvr_ligand.sdf,,test\n"
    )
    complexes, failures = read_manifest(manifest)
    assert [(c.id, c.label, c.split) for c in complexes] == [("hiv_1", 9.51, "train")]
    assert complexes[0].protein == tmp_path / "files" / "1hvr" / "1hvr_protein.pdb"
    assert failures[0].id == "gone" and "file not found" in failures[0].problem
    labelled = join_labels(complexes, {"hiv_1": 1.0})
    assert labelled[0].label == 9.51  # the manifest's own label wins


@pytest.mark.parametrize(
    "rows, problem",
    [
        ("../evil,a.pdb,b.sdf,1\n", "invalid complex id"),
        ("a,a.pdb,b.sdf,1\nA,a.pdb,b.sdf,2\n", "duplicate id"),
        ("a,a.pdb,b.sdf,strong\n", "not a number"),
    ],
)
def test_manifest_rejects_bad_rows(tmp_path, rows, problem):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,protein,ligand,label\n" + rows)
    with pytest.raises(InputError, match=problem):
        read_manifest(manifest)


def test_manifest_needs_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,file\nx,y\n")
    with pytest.raises(InputError, match="needs columns"):
        read_manifest(manifest)


def test_parse_pair():
    pocket = FIXTURE / "1a28" / "1a28_pocket.pdb"
    made = parse_pair(f"{pocket}:{FIXTURE / '1a28' / '1a28_ligand.sdf'}")
    assert (made.id, made.protein, made.pocket) == ("1a28", None, pocket)
    with pytest.raises(InputError, match="PROTEIN_FILE:LIGAND_FILE"):
        parse_pair(str(pocket))
    with pytest.raises(InputError, match="file not found"):
        parse_pair(f"{pocket}:missing.sdf")


def test_ligand_sdf_heavy_atoms_only():
    ligand = read_ligand([FIXTURE / "1hvr" / "1hvr_ligand.sdf"])
    assert ligand.coords.shape == (46, 3) and ligand.coords.dtype == np.float64
    assert set(ligand.element) == {"C", "N", "O"}
    assert ligand.source == "1hvr_ligand.sdf"


def test_ligand_falls_back_to_mol2_then_to_unsanitised(tmp_path):
    sdf, mol2 = tmp_path / "x_ligand.sdf", tmp_path / "x_ligand.mol2"
    sdf.write_text(PENTAVALENT_SDF)
    mol2.write_text(ETHANOL_MOL2)
    ligand = read_ligand([sdf, mol2])
    assert ligand.source == "x_ligand.mol2"  # sanitised mol2 beats unsanitised sdf
    assert list(ligand.element) == ["C", "C", "O"]  # hydrogens dropped
    alone = read_ligand([sdf])
    assert alone.source == "x_ligand.sdf (sanitize=False)"
    assert alone.coords.shape == (6, 3)


def test_unreadable_ligand_is_an_input_error(tmp_path):
    junk = tmp_path / "j_ligand.sdf"
    junk.write_text("this is not a molecule\n")
    with pytest.raises(InputError, match="no ligand with 3D heavy atoms"):
        read_ligand([junk])
