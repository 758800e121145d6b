"""evaluation.dssp: the backbone file handed to mkdssp, parsing its output, mapping states back.

Tests that run mkdssp are skipped where it is not installed (``make dssp`` installs it; ``make
test`` does so where it can).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from holoprot.errors import HoloprotError
from holoprot.evaluation.dssp import (
    backbone_pdb,
    dssp_states,
    dssp_version,
    eight_state,
    mkdssp_path,
    parse_dssp,
    three_state,
)
from holoprot.io.structure import read_structure

DATA = Path(__file__).parent / "data" / "structures"
needs_mkdssp = pytest.mark.requires(
    shutil.which("mkdssp") is not None, "mkdssp (DSSP 4: `make dssp`)"
)

_OUTPUT = """\
==== Secondary Structure Definition by the program DSSP, NKI version 4.2.2 ==== DATE=2026-01-01
  #  RESIDUE AA STRUCTURE BP1 BP2  ACC     N-H-->O    O-->H-N    N-H-->O    O-->H-N    TCO
    1    1 A M              0   0  100      0, 0.0     0, 0.0     0, 0.0     0, 0.0   0.000
    2    2 A K  H  >  S+     0   0   50      0, 0.0     0, 0.0     0, 0.0     0, 0.0   0.000
    3        !              0   0    0      0, 0.0     0, 0.0     0, 0.0     0, 0.0   0.000
    4    1 B E  E     -a    5   0A  10      0, 0.0     0, 0.0     0, 0.0     0, 0.0   0.000
"""


def test_state_mappings() -> None:
    codes = np.array(["H", "G", "I", "P", "E", "B", "T", "S", "-", ""])
    assert three_state(codes).tolist() == ["H", "H", "H", "C", "E", "E", "C", "C", "C", ""]
    assert eight_state(codes).tolist() == ["H", "G", "I", "-", "E", "B", "T", "S", "-", ""]


def test_parse_dssp_reads_columns_and_skips_breaks() -> None:
    assert parse_dssp(_OUTPUT) == {("A", 1): "-", ("A", 2): "H", ("B", 1): "E"}
    with pytest.raises(HoloprotError, match="no residue table"):
        parse_dssp("not dssp\n")


def test_backbone_pdb_renames_chains_and_numbers_residues() -> None:
    structure = read_structure(DATA / "1gbt.cif")  # insertion codes 65A, 184A, ...
    text, residue_of = backbone_pdb(structure)
    atoms = [line for line in text.splitlines() if line.startswith("ATOM")]
    assert text.startswith("HEADER") and all(len(line) == 80 for line in atoms)
    assert {line[12:16].strip() for line in atoms} == {"N", "CA", "C", "O"}
    rows = np.array(list(residue_of.values()))
    assert structure.is_amino_acid[rows].all() and len(set(rows.tolist())) == len(rows)
    assert list(residue_of)[:2] == [("A", 1), ("A", 2)]
    first = int(structure.residue_index[np.isin(structure.atom_name, ["CA"])][0])
    assert residue_of[("A", 1)] == first
    ca = next(line for line in atoms if line[12:16] == " CA ")
    np.testing.assert_allclose(
        [float(ca[30:38]), float(ca[38:46]), float(ca[46:54])],
        structure.coords[(structure.residue_index == first) & (structure.atom_name == "CA")][0],
        atol=1e-3,
    )


def test_missing_mkdssp_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(HoloprotError, match="make dssp"):
        mkdssp_path()


@needs_mkdssp
def test_states_equal_dssp_on_the_whole_file_by_chain_number_and_insertion_code() -> None:
    """DSSP on the backbone file, mapped back, equals DSSP on the original mmCIF file (all atoms,
    the file's own numbering and insertion codes) for every amino-acid residue."""
    path = DATA / "1gbt.cif"
    structure = read_structure(path)
    states = dssp_states(structure)
    run = subprocess.run(
        [mkdssp_path(), "--output-format", "dssp", str(path), "/dev/stdout"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  #  RESIDUE"))
    whole = {
        (line[11], int(line[5:10]), line[10].strip()): line[16].replace(" ", "-")
        for line in lines[start + 1 :]
        if line[13] != "!"
    }
    amino = np.flatnonzero(structure.is_amino_acid)
    keys = [(structure.chain[r], int(structure.seq_num[r]), structure.icode[r]) for r in amino]
    assert ("A", 65, "A") in keys
    assert [states[r] for r in amino] == [whole[k] for k in keys]
    assert np.count_nonzero(states == "E") > 50  # trypsin: a β-barrel protease


@needs_mkdssp
def test_helical_protein_and_version() -> None:
    structure = read_structure(DATA / "1a8o.pdb")  # HIV-1 capsid C-terminal domain: 4 helices
    states = dssp_states(structure)
    assert np.mean(three_state(states[structure.is_amino_acid]) == "H") > 0.5
    assert (states[~structure.is_amino_acid] == "").all()
    assert dssp_version().startswith("mkdssp version 4")
