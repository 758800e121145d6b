"""holoprot.zernike.neighborhoods: exact agreement with brute force, centre rules, ragged layout."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ALTLOC, LARGE, MMCIF, MSE

import holoprot.zernike.neighborhoods as nbmod
from holoprot.io.structure import Structure, read_structure
from holoprot.zernike.neighborhoods import MIN_DISTANCE, extract_neighborhoods


@pytest.fixture(scope="module")
def gbt() -> Structure:
    return read_structure(MMCIF)


def _brute_force(s: Structure, ca_atom: int, radius: float, extra=None) -> np.ndarray:
    """Environment atom rows of one centre by an O(N) distance scan (extras as N + k)."""
    xyz = s.coords if extra is None else np.concatenate([s.coords, extra])
    d = np.sqrt(((xyz - s.coords[ca_atom]) ** 2).sum(axis=1))
    keep = (d <= radius) & (d >= MIN_DISTANCE)
    keep[ca_atom] = False
    return np.flatnonzero(keep)


def _ca_rows(s: Structure) -> dict[int, int]:
    """residue -> Cα atom row, by a plain loop over atoms."""
    out: dict[int, int] = {}
    for k in range(s.n_atoms):
        r = int(s.residue_index[k])
        if s.is_amino_acid[r] and s.atom_name[k] == "CA" and s.element[k] == "C":
            out.setdefault(r, k)
    return out


def _synthetic(coords, names, elements, res_of_atom, res_names) -> Structure:
    res_names = np.asarray(res_names, dtype="<U5")
    is_aa = np.isin(res_names, ["ALA", "GLY", "MSE"])
    return Structure(
        id="synthetic",
        path="synthetic.pdb",
        model=1,
        coords=np.asarray(coords, dtype=np.float64),
        element=np.asarray(elements, dtype="<U2"),
        atom_name=np.asarray(names, dtype="<U4"),
        residue_index=np.asarray(res_of_atom, dtype=np.int32),
        chain=np.array(["A"] * len(res_names), dtype=object),
        seq_num=np.arange(1, len(res_names) + 1, dtype=np.int32),
        icode=np.array([""] * len(res_names), dtype="<U1"),
        res_name=res_names,
        is_amino_acid=is_aa,
        is_standard=is_aa & (res_names != "MSE"),
        is_hetero=~is_aa,
    )


def test_matches_brute_force_exactly(gbt):
    nb = extract_neighborhoods(gbt, 10.0)
    cas = _ca_rows(gbt)
    assert nb.residue_index.tolist() == sorted(cas)
    assert nb.offsets[0] == 0 and nb.offsets[-1] == len(nb.coords) == len(nb.element)
    assert nb.offsets.dtype == np.int64 and nb.residue_index.dtype == np.int64
    assert nb.atom_index.dtype == np.int64 and nb.coords.dtype == np.float32
    for i, r in enumerate(nb.residue_index):
        rows = slice(nb.offsets[i], nb.offsets[i + 1])
        expected = _brute_force(gbt, cas[int(r)], 10.0)
        assert np.array_equal(nb.atom_index[rows], expected), int(r)
        ref = (gbt.coords[expected] - gbt.coords[cas[int(r)]]).astype(np.float32)
        assert np.array_equal(nb.coords[rows], ref)
        assert np.array_equal(nb.element[rows], gbt.element[expected])
    assert np.array_equal(nb.n_atoms, np.diff(nb.offsets)) and len(nb) == len(cas)
    assert nb.n_atoms.min() > 50 and nb.radius == 10.0


def test_smaller_radius_matches_brute_force(gbt):
    nb = extract_neighborhoods(gbt, 4.5)
    cas = _ca_rows(gbt)
    for i in range(0, len(nb), 17):
        r = int(nb.residue_index[i])
        got = nb.atom_index[nb.offsets[i] : nb.offsets[i + 1]]
        assert np.array_equal(got, _brute_force(gbt, cas[r], 4.5))


def test_centre_rules(gbt):
    nb = extract_neighborhoods(gbt)
    # the Ca2+ ion (residue CA, atom CA, element CA) is environment, never a centre
    ion = int(np.flatnonzero(gbt.res_name == "CA")[0])
    ion_atom = int(np.flatnonzero(gbt.residue_index == ion)[0])
    assert ion not in nb.residue_index
    assert ion_atom in nb.atom_index
    assert gbt.is_amino_acid[nb.residue_index].all()
    for i, r in enumerate(nb.residue_index):
        rows = slice(nb.offsets[i], nb.offsets[i + 1])
        own = gbt.atom_name[nb.atom_index[rows][gbt.residue_index[nb.atom_index[rows]] == r]]
        assert "CA" not in own  # central Cα removed
        assert {"N", "C"} <= set(own)  # rest of the central residue kept
    norms = np.linalg.norm(nb.coords.astype(np.float64), axis=1)
    assert norms.min() >= MIN_DISTANCE and np.isfinite(nb.coords).all()


def test_non_standard_amino_acid_is_a_centre():
    s = read_structure(MSE)
    nb = extract_neighborhoods(s)
    mse = set(np.flatnonzero(s.res_name == "MSE").tolist())
    assert mse and mse <= set(nb.residue_index.tolist())


def test_residue_without_ca_is_skipped(tmp_path):
    lines = MSE.read_text().splitlines()
    ref = read_structure(MSE)
    target = ("A", 160)  # a residue of the middle of the chain
    kept = [
        ln
        for ln in lines
        if not (
            ln.startswith("ATOM") and ln[12:16] == " CA " and (ln[21], int(ln[22:26])) == target
        )
    ]
    assert len(kept) == len(lines) - 1
    path = tmp_path / "no_ca.pdb"
    path.write_text("\n".join(kept) + "\n")
    s = read_structure(path)
    nb = extract_neighborhoods(s)
    r = int(np.flatnonzero((s.chain == "A") & (s.seq_num == 160))[0])
    assert nb.skipped.tolist() == [r] and nb.skipped.dtype == np.int64
    assert r not in nb.residue_index and len(nb) == len(extract_neighborhoods(ref)) - 1


def test_chains_and_residues_filters():
    s = read_structure(ALTLOC)
    full = extract_neighborhoods(s)
    only_b = extract_neighborhoods(s, chains=["B"])
    assert 0 < len(only_b) < len(full)
    assert set(s.chain[only_b.residue_index]) == {"B"}
    assert set(only_b.residue_index) == set(full.residue_index[s.chain[full.residue_index] == "B"])
    # neighbourhoods of B centres still see chain A atoms, and equal the unfiltered ones
    i_full = int(np.flatnonzero(full.residue_index == only_b.residue_index[0])[0])
    a = only_b.atom_index[only_b.offsets[0] : only_b.offsets[1]]
    assert np.array_equal(a, full.atom_index[full.offsets[i_full] : full.offsets[i_full + 1]])
    wanted = full.residue_index[[3, 10, 11]]
    picked = extract_neighborhoods(s, residues=wanted)
    assert picked.residue_index.tolist() == sorted(wanted.tolist())
    both = extract_neighborhoods(s, residues=wanted, chains=["Z"])
    assert len(both) == 0 and both.offsets.tolist() == [0] and both.coords.shape == (0, 3)


def test_extra_atoms_are_environment_only(gbt):
    cas = _ca_rows(gbt)
    r0 = min(cas)
    ca = gbt.coords[cas[r0]]
    extra = np.array(
        [ca + [1.5, 0.0, 0.0], ca + [0.0, 0.0, 9.9], ca + [0.0, 10.5, 0.0], ca, ca + [0, 0, 1e-7]]
    )
    extra_el = np.array(["c", "Cl", "N", "O", "O"])
    nb = extract_neighborhoods(
        gbt, residues=np.array([r0]), extra_coords=extra, extra_element=extra_el
    )
    base = extract_neighborhoods(gbt, residues=np.array([r0]))
    assert len(nb) == 1
    is_extra = nb.atom_index == -1
    assert is_extra.sum() == 2  # 10.5 Å is out; the atoms at (almost) the centre are dropped
    assert nb.element[is_extra].tolist() == ["C", "CL"]
    assert np.allclose(nb.coords[is_extra], [[1.5, 0, 0], [0, 0, 9.9]], atol=1e-5)
    assert np.array_equal(nb.atom_index[~is_extra], base.atom_index)
    assert np.array_equal(nb.atom_index[~is_extra], _brute_force(gbt, cas[r0], 10.0))
    # extras never create neighbourhoods
    all_nb = extract_neighborhoods(gbt, extra_coords=extra, extra_element=extra_el)
    assert len(all_nb) == len(cas)


def test_radius_is_inclusive_and_other_atoms_at_centre_dropped():
    coords = [[0.5, 0.25, 0.0], [10.5, 0.25, 0.0], [0.5, 0.25, 10.0 + 1e-6], [0.5, 0.25, 0.0]]
    s = _synthetic(
        coords, ["CA", "C", "N", "ZN"], ["C", "C", "N", "ZN"], [0, 0, 0, 1], ["GLY", "ZN"]
    )
    nb = extract_neighborhoods(s, radius=10.0)
    assert nb.residue_index.tolist() == [0]
    assert nb.atom_index.tolist() == [1]  # exactly 10 Å kept, 10 + 1e-6 out, ZN at centre dropped
    assert nb.coords.tolist() == [[10.0, 0.0, 0.0]]


def test_neighbourhood_with_thousands_of_atoms():
    rng = np.random.default_rng(1)
    n = 2600
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    cloud = direction * (rng.uniform(0.2, 1.0, size=(n, 1)) * 9.5)
    coords = np.concatenate([[[0.0, 0.0, 0.0], [1.45, 0.0, 0.0]], cloud])
    names = ["CA", "N"] + ["C1"] * n
    elements = ["C", "N"] + ["C"] * n
    s = _synthetic(coords, names, elements, [0, 0] + [1] * n, ["ALA", "LIG"])
    nb = extract_neighborhoods(s)
    assert nb.n_atoms.tolist() == [n + 1]
    assert np.array_equal(nb.atom_index, np.arange(1, n + 2))
    assert np.allclose(nb.coords, coords[1:], atol=1e-5)


def test_input_validation(gbt):
    with pytest.raises(ValueError, match="together"):
        extract_neighborhoods(gbt, extra_coords=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="differ in length"):
        extract_neighborhoods(gbt, extra_coords=np.zeros((2, 3)), extra_element=np.array(["C"]))
    with pytest.raises(ValueError, match="positive"):
        extract_neighborhoods(gbt, radius=0.0)


def test_large_structure_has_a_neighbourhood_per_residue():
    s = read_structure(LARGE)
    nb = extract_neighborhoods(s)
    assert len(nb) > 6000
    assert len(nb) + len(nb.skipped) == int(s.is_amino_acid.sum())


@pytest.mark.parametrize("chunk", [1, 7, 2048])
def test_grid_pairs_equal_all_pairs_brute_force(monkeypatch, chunk):
    """The grid search finds exactly the pairs a full distance matrix finds, sorted by (centre,
    point): random clouds of every density, chunked centres, centres outside the points' box,
    and two clusters 10⁹ Å apart (the key-overflow guard)."""
    monkeypatch.setattr(nbmod, "_CENTRE_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    cases = []
    for _ in range(60):
        scale = rng.uniform(0.1, 40)
        points = rng.normal(size=(int(rng.integers(1, 300)), 3)) * scale
        centres = rng.normal(size=(int(rng.integers(1, 40)), 3)) * scale * rng.uniform(0.5, 2)
        cases.append((centres, points, float(rng.uniform(0.01, 20))))
    far = np.concatenate([rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 1e9])
    cases.append((far[::5], far, 2.0))
    for centres, points, radius in cases:
        reach = radius * (1 + 1e-9) + 1e-9
        d2 = sum((centres[:, None, a] - points[None, :, a]) ** 2 for a in range(3))
        expected = np.nonzero(d2 <= reach * reach)
        got = nbmod._pairs_within(centres, points, radius)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
