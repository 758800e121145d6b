"""holoprot.io.structure: each parsing policy checked on a real file that exercises it."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ALTLOC, LARGE, MMCIF, MSE, NMR

from holoprot.errors import InputError
from holoprot.io.structure import detect_format, read_structure, structure_id

WATERS = {"HOH", "WAT", "DOD"}


def _raw_pdb_atoms(text: str) -> dict[tuple, tuple[np.ndarray, str]]:
    """Plain column parser: first model, no waters/H, highest-occupancy altloc (first on ties).

    Returns {(chain, resseq, icode, resname, atom name): (xyz, element)}.
    """
    best: dict[tuple, tuple[float, np.ndarray, str]] = {}
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM", "HETATM")):
            continue
        resname = line[17:20].strip()
        element = line[76:78].strip().upper()
        if resname in WATERS or element in ("H", "D"):
            continue
        key = (line[21], int(line[22:26]), line[26].strip(), resname, line[12:16].strip())
        occ = float(line[54:60])
        xyz = np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
        if key not in best or occ > best[key][0]:
            best[key] = (occ, xyz, element)
    return {k: (v[1], v[2]) for k, v in best.items()}


def _atom_table(s) -> dict[tuple, tuple[np.ndarray, str]]:
    r = s.residue_index
    keys = zip(
        s.chain[r], s.seq_num[r].tolist(), s.icode[r], s.res_name[r], s.atom_name, strict=True
    )
    return {
        (str(c), n, str(i), str(rn), str(a)): (s.coords[k], str(s.element[k]))
        for k, (c, n, i, rn, a) in enumerate(keys)
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- arrays and policies on real files ---------------------------------------------------------


def test_array_layout_and_dtypes():
    s = read_structure(ALTLOC)
    assert s.id == "19hc" and s.path == str(ALTLOC) and s.model == 1
    assert s.coords.shape == (s.n_atoms, 3) and s.coords.dtype == np.float64
    assert s.element.dtype == np.dtype("<U2") and s.atom_name.dtype == np.dtype("<U4")
    assert s.residue_index.dtype == np.int32 and s.seq_num.dtype == np.int32
    assert s.icode.dtype == np.dtype("<U1") and s.res_name.dtype == np.dtype("<U5")
    for a in (s.chain, s.seq_num, s.icode, s.is_amino_acid, s.is_standard, s.is_hetero):
        assert a.shape == (s.n_residues,)
    # atoms grouped by residue, every residue has atoms, residues in file order
    assert np.all(np.diff(s.residue_index) >= 0)
    assert set(np.unique(s.residue_index)) == set(range(s.n_residues))
    assert list(s.chain[:2]) == ["A", "A"] and s.seq_num[0] < s.seq_num[1]


def test_pdb_matches_independent_column_parser_with_altlocs():
    """19HC: every atom equals a plain column parse (altloc = highest occupancy), FE kept."""
    s = read_structure(ALTLOC)
    expected = _raw_pdb_atoms(gzip.decompress(ALTLOC.read_bytes()).decode())
    got = _atom_table(s)
    assert len(got) == s.n_atoms  # no duplicate atoms left by altlocs
    assert got.keys() == expected.keys()
    for key, (xyz, element) in expected.items():
        assert np.allclose(got[key][0], xyz, atol=1e-6), key
        assert got[key][1] == element, key
    assert "FE" in set(s.element)


def test_altloc_highest_occupancy_wins_even_when_not_first():
    s = read_structure(ALTLOC)
    # GLU B 191 CA: altloc A occ 0.45 (first), B occ 0.55 -> B's coordinates
    table = _atom_table(s)
    xyz, _ = table[("B", 191, "", "GLU", "CA")]
    lines = gzip.decompress(ALTLOC.read_bytes()).decode().splitlines()
    b_line = next(ln for ln in lines if ln.startswith("ATOM") and ln[12:27] == " CA BGLU B 191 ")
    assert float(b_line[54:60]) == pytest.approx(0.55)
    assert np.allclose(xyz, [float(b_line[30:38]), float(b_line[38:46]), float(b_line[46:54])])
    # SER A 58 CA: A occ 0.66 is first and highest -> A's coordinates
    assert np.allclose(table[("A", 58, "", "SER", "CA")][0], [3.012, -20.305, -6.187])


def test_altloc_tie_keeps_first(tmp_path):
    text = gzip.decompress(ALTLOC.read_bytes()).decode()
    lines = [
        ln[:54] + "  0.50" + ln[60:] if ln.startswith("ATOM") and ln[17:26] == "SER A  58" else ln
        for ln in text.splitlines()
    ]
    path = _write(tmp_path / "tie.pdb", ("\n".join(lines) + "\n").encode())
    table = _atom_table(read_structure(path))
    assert np.allclose(table[("A", 58, "", "SER", "CA")][0], [3.012, -20.305, -6.187])
    assert np.allclose(table[("A", 58, "", "SER", "OG")][0], [4.902, -21.710, -6.830])


def test_mmcif_insertion_codes_and_author_ids():
    s = read_structure(MMCIF)
    ids = set(zip(s.chain, s.seq_num.tolist(), s.icode, s.res_name, strict=True))
    with_icode = {r for r in ids if r[2]}
    assert with_icode == {
        ("A", 65, "A", "ARG"),
        ("A", 184, "A", "TYR"),
        ("A", 188, "A", "LYS"),
        ("A", 221, "A", "GLN"),
    }
    # 184 and 184A are distinct residues (author numbering, chymotrypsin convention)
    assert ("A", 184, "", "GLY") in ids
    assert len(ids) == s.n_residues


def test_waters_dropped_hetero_groups_kept_with_full_elements():
    s = read_structure(MMCIF)
    raw = MMCIF.read_text().splitlines()
    assert sum(" HOH " in ln for ln in raw if ln.startswith("HETATM")) > 100
    assert not WATERS & set(s.res_name)
    het = {str(n) for n in s.res_name[s.is_hetero]}
    assert het == {"CA", "SO4", "GBS"}
    # calcium ion: element CA (never truncated to C), not an amino acid
    ca_ion = np.flatnonzero(s.res_name == "CA")
    assert len(ca_ion) == 1 and not s.is_amino_acid[ca_ion[0]]
    assert s.element[s.residue_index == ca_ion[0]].tolist() == ["CA"]
    # every ligand heavy atom of the file is kept
    gbs_rows = [ln for ln in raw if ln.startswith("HETATM") and " GBS " in ln]
    assert (s.res_name[s.residue_index] == "GBS").sum() == len(gbs_rows) > 5


def test_hydrogens_dropped():
    s = read_structure(NMR)
    raw = gzip.decompress(NMR.read_bytes()).decode().splitlines()
    assert sum(ln.startswith("ATOM") and ln.split()[2] == "H" for ln in raw) > 100
    assert "H" not in set(s.element) and "D" not in set(s.element)
    assert s.n_atoms > 500


def test_selenomethionine():
    s = read_structure(MSE)
    mse = np.flatnonzero(s.res_name == "MSE")
    assert len(mse) >= 2
    assert s.is_amino_acid[mse].all() and not s.is_standard[mse].any() and s.is_hetero[mse].all()
    se_atoms = np.flatnonzero(s.element == "SE")
    assert len(se_atoms) == len(mse)
    assert set(s.atom_name[se_atoms]) == {"SE"} and set(s.residue_index[se_atoms]) == set(mse)
    assert "S" not in set(s.element[np.isin(s.residue_index, mse)])
    standard = s.res_name == "ALA"
    assert s.is_standard[standard].all() and s.is_amino_acid[standard].all()


def test_blank_element_column_is_inferred_from_name(tmp_path):
    text = MSE.read_text()
    blanked = "\n".join(
        ln[:76] if ln.startswith(("ATOM", "HETATM")) else ln for ln in text.splitlines()
    )
    s0 = read_structure(MSE)
    s1 = read_structure(_write(tmp_path / "blank.pdb", blanked.encode()))
    assert np.array_equal(s0.element, s1.element)


def test_nmr_models():
    first = read_structure(NMR)
    second = read_structure(NMR, model=2)
    assert (first.model, second.model) == (1, 2)
    assert np.array_equal(first.atom_name, second.atom_name)
    assert first.n_atoms == second.n_atoms
    shift = np.linalg.norm(first.coords - second.coords, axis=1)
    assert shift.mean() > 0.1
    assert np.array_equal(read_structure(NMR, model=1).coords, first.coords)
    with pytest.raises(InputError, match=r"has no model 4 \(3 model\(s\)") as err:
        read_structure(NMR, model=4)
    assert str(NMR) in str(err.value)


def test_large_structure():
    """Over 5,000 residues (speed is measured in benchmarks/, never asserted here)."""
    s = read_structure(LARGE)
    assert s.n_residues > 5000 and s.n_atoms > 50000
    raw = gzip.decompress(LARGE.read_bytes()).decode().splitlines()
    assert s.n_atoms == sum(ln.startswith(("ATOM", "HETATM")) for ln in raw)
    assert len(set(s.chain)) == 40


# --- formats, names ----------------------------------------------------------------------------


def test_format_sniffed_from_content(tmp_path):
    lying = shutil.copy(MMCIF, tmp_path / "really_cif.pdb")
    assert detect_format(lying) == "mmcif"
    a, b = read_structure(MMCIF), read_structure(lying)
    assert np.array_equal(a.coords, b.coords) and np.array_equal(a.res_name, b.res_name)
    pdb_as_cif = shutil.copy(MSE, tmp_path / "really_pdb.cif")
    assert detect_format(pdb_as_cif) == "pdb"
    assert np.array_equal(read_structure(pdb_as_cif).coords, read_structure(MSE).coords)


def test_gzip_read_by_content(tmp_path):
    gz = _write(tmp_path / "1a8o.pdb.gz", gzip.compress(MSE.read_bytes()))
    hidden = shutil.copy(gz, tmp_path / "no_gz_suffix.pdb")
    ref = read_structure(MSE)
    for path in (gz, hidden):
        s = read_structure(path)
        assert np.array_equal(s.coords, ref.coords) and np.array_equal(s.element, ref.element)
    assert read_structure(gz).id == "1a8o"
    assert detect_format(NMR) == "mmcif"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1abc.pdb.gz", "1abc"),
        ("pdb1abc.ent", "pdb1abc"),
        ("1ABC.CIF", "1ABC"),
        ("x.mmcif.gz", "x"),
        ("my_model.v2.pdb", "my_model.v2"),
        ("noext", "noext"),
    ],
)
def test_structure_id(name, expected):
    assert structure_id(Path("some/dir") / name) == expected


# --- bad input ---------------------------------------------------------------------------------


def _assert_input_error(path, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as err:
        read_structure(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    return err.value


def test_missing_path(tmp_path):
    _assert_input_error(tmp_path / "nope.pdb", "no such file")


def test_directory_path(tmp_path):
    _assert_input_error(tmp_path, "directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = shutil.copy(MSE, tmp_path / "locked.pdb")
    os.chmod(path, 0)
    try:
        _assert_input_error(path, "cannot read")
    finally:
        os.chmod(path, 0o644)


@pytest.mark.parametrize("content", [b"", b"\n  \n", gzip.compress(b"")])
def test_empty_file(tmp_path, content):
    _assert_input_error(_write(tmp_path / "empty.pdb", content), "empty file")


def test_binary_garbage(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    _assert_input_error(_write(tmp_path / "garbage.cif", data), "binary")


def test_corrupt_gzip(tmp_path):
    data = gzip.compress(MSE.read_bytes())[:1500]
    _assert_input_error(_write(tmp_path / "cut.pdb.gz", data), "corrupt gzip")


def test_pdb_truncated_inside_atom_record(tmp_path):
    data = MSE.read_bytes()
    start = data.index(b"\nATOM ", len(data) // 2) + 1
    _assert_input_error(_write(tmp_path / "cut.pdb", data[: start + 40]), "truncated")


def test_pdb_truncated_between_lines_is_read_as_is(tmp_path):
    data = MSE.read_bytes()
    start = data.index(b"\nATOM ", len(data) // 2) + 1
    s = read_structure(_write(tmp_path / "half.pdb", data[:start]))
    expected = sum(
        ln.startswith(("ATOM", "HETATM")) and ln[17:20] != "HOH"
        for ln in data[:start].decode().splitlines()
    )
    assert 0 < s.n_atoms == expected < read_structure(MSE).n_atoms


def test_mmcif_truncated_mid_row(tmp_path):
    data = MMCIF.read_bytes()
    start = data.index(b"\nATOM ", len(data) // 2) + 1
    _assert_input_error(_write(tmp_path / "cut.cif", data[: start + 30]), "truncated")
    end_of_row = data.index(b"\n", start)
    # a row that lost values in the middle of an otherwise complete file: gemmi's error, wrapped
    broken = data[: start + 30] + data[end_of_row:]
    _assert_input_error(_write(tmp_path / "broken.cif", broken), "cannot parse as MMCIF")
    _assert_input_error(_write(tmp_path / "cut2.cif", data[:end_of_row]), "truncated")
    assert read_structure(_write(tmp_path / "ok.cif", data[: end_of_row + 1])).n_atoms > 100


def test_text_that_is_no_structure(tmp_path):
    _assert_input_error(_write(tmp_path / "notes.pdb", b"hello\nworld\n"), "not a PDB or mmCIF")
    _assert_input_error(_write(tmp_path / "x.cif", b"data_x\n_cell.length_a 1\n"), "_atom_site")


def test_header_only_and_water_only_files(tmp_path):
    lines = MSE.read_text().splitlines()
    header = [ln for ln in lines if not ln.startswith(("ATOM", "HETATM", "ANISOU"))]
    _assert_input_error(_write(tmp_path / "h.pdb", "\n".join(header).encode()), "no atoms")
    water = [ln for ln in lines if ln.startswith("HETATM") and ln[17:20] == "HOH"]
    _assert_input_error(_write(tmp_path / "w.pdb", "\n".join(water).encode()), "no atoms")


def test_atoms_without_amino_acids_are_not_an_error(tmp_path):
    lines = gzip.decompress(ALTLOC.read_bytes()).decode().splitlines()
    heme = [ln for ln in lines if ln.startswith("HETATM") and ln[17:20] == "HEM"]
    s = read_structure(_write(tmp_path / "heme.pdb", ("\n".join(heme) + "\nEND\n").encode()))
    assert s.n_atoms == len(heme) and not s.is_amino_acid.any()


def test_examples_are_small_real_structures(examples_dir):
    files = sorted(p for p in examples_dir.iterdir() if p.name != "PROVENANCE.md")
    assert {detect_format(p) for p in files} == {"pdb", "mmcif"}
    for path in files:
        s = read_structure(path)
        assert 100 <= s.is_amino_acid.sum() <= 600, path.name


def test_garbage_in_charge_columns_is_ignored(tmp_path) -> None:
    """Some tools (BM5 'matched' files) write numbers in columns 77-80; the charge is unused."""
    text = Path(MSE).read_text().splitlines()
    mangled = [
        (ln[:66].ljust(72) + "   1  B   1930") if ln.startswith("ATOM") else ln for ln in text
    ]
    path = tmp_path / "mangled.pdb"
    path.write_text("\n".join(mangled) + "\n")
    plain, odd = read_structure(MSE), read_structure(path)
    assert np.array_equal(plain.coords, odd.coords)
    assert np.array_equal(plain.element, odd.element)


def test_non_finite_coordinates_are_refused(tmp_path):
    lines = MSE.read_text().splitlines(keepends=True)
    row = next(i for i, ln in enumerate(lines) if ln.startswith("ATOM"))
    lines[row] = lines[row][:30] + "     nan" + lines[row][38:]
    err = _assert_input_error(_write(tmp_path / "nan.pdb", "".join(lines).encode()), "non-finite")
    assert "(1 atom(s) in all)" in str(err)
