"""The training pack: atoms at 0.001 Å that rebuild every neighbourhood, on CPU and in torch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import holoprot.io.structure
from holoprot.errors import InputError
from holoprot.io.structure import read_structure
from holoprot.training.pack import (
    build_pack,
    load_pack,
    pack_dataset,
    pairs_within_torch,
    project_pack,
)
from holoprot.zernike.pipeline import ProjectionSettings, project_file

DATA = Path(__file__).parent / "data" / "structures"
FILES = [str(DATA / "1a8o.pdb"), str(DATA / "1gbt.cif")]


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack")
    groups = out / "groups.csv"
    groups.write_text("structure_id,group,split\n1a8o,g1,train\n1gbt,g2,val\n")
    build_pack(FILES, out, group_file=groups, workers=0)
    return out


def test_pack_reproduces_the_files_coefficients_bit_for_bit(pack_dir: Path) -> None:
    pack = load_pack(pack_dir)
    assert pack.meta["max_coordinate_error"] == 0.0  # three decimals: exact
    projected = [project_file(f, ProjectionSettings()) for f in FILES]
    expected = np.concatenate([p.coefficients for p in projected])
    np.testing.assert_array_equal(project_pack(pack, "cpu"), expected)
    assert pack.identity().equals(pa.concat_tables([p.identity for p in projected]))
    for s, f in enumerate(FILES):  # decoded coordinates are the parser's float64 values
        structure = read_structure(f)
        keep = np.isin(structure.element, ["C", "N", "O", "S"])
        np.testing.assert_array_equal(pack.coordinates(s), structure.coords[keep])


def test_torch_path_finds_the_same_neighbourhoods_and_coefficients(pack_dir: Path) -> None:
    pack = load_pack(pack_dir)
    for s in range(len(pack)):
        nbh = pack.neighborhoods(s)
        xyz = torch.as_tensor(pack.coordinates(s))
        seg, atom = pairs_within_torch(xyz, torch.as_tensor(pack.centres(s)), 10.0, 5000)
        np.testing.assert_array_equal(atom.numpy(), nbh.atom_index)
        np.testing.assert_array_equal(np.bincount(seg.numpy(), minlength=len(nbh)), nbh.n_atoms)
    numba = project_pack(pack, "cpu")
    on_torch = project_pack(pack, "cpu", backend="torch", batch_neighborhoods=50)
    scale = np.abs(numba).max()
    np.testing.assert_allclose(on_torch, numba, rtol=0, atol=2e-6 * scale)


def test_split_groups_and_dataset_follow_the_group_file(pack_dir: Path, tmp_path: Path) -> None:
    pack = load_pack(pack_dir)
    n_first = int(pack.residue_offsets[1])
    split = pack.split()
    assert set(split[:n_first]) == {"train"} and set(split[n_first:]) == {"val"}
    assert pack.meta["split_residues"] == {
        "train": n_first,
        "val": len(split) - n_first,
        "test": 0,
    }
    pack.write_split(tmp_path / "split.csv")
    lines = (tmp_path / "split.csv").read_text().splitlines()
    assert lines[0] == "source_path,structure_id,group,split"
    assert lines[1] == f"{FILES[0]},1a8o,g1,train"
    coefficients = project_pack(pack, "cpu")
    data = pack_dataset(pack, coefficients)
    rows = np.array([5, 0, len(data) - 1])
    np.testing.assert_array_equal(data.rows(rows), coefficients[rows])
    assert data.dim == 1708 and len(data) == len(coefficients)


def test_coordinates_with_more_decimals_are_rounded_within_half_a_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = holoprot.io.structure.read_structure
    jitter = np.random.default_rng(0).uniform(-0.002, 0.002, size=(100_000, 3))

    def finer(path, model=None):  # noqa: ANN001, ANN202
        s = real(path, model=model)
        return dataclasses.replace(s, coords=s.coords + jitter[: s.n_atoms])

    monkeypatch.setattr(holoprot.io.structure, "read_structure", finer)
    meta = build_pack(FILES[:1], tmp_path / "p", fractions=(1.0, 0.0, 0.0), workers=0)
    assert 0.0004 < meta["max_coordinate_error"] <= 0.0005
    pack = load_pack(tmp_path / "p")
    s = finer(FILES[0])
    keep = np.isin(s.element, ["C", "N", "O", "S"])
    assert np.abs(pack.coordinates(0) - s.coords[keep]).max() <= 0.0005
    stored = json.loads((tmp_path / "p" / "pack.json").read_text())
    assert stored["max_coordinate_error"] == meta["max_coordinate_error"]


def test_failures_are_listed_and_bad_packs_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdb"
    bad.write_text("not a structure\n")
    meta = build_pack([FILES[0], str(bad)], tmp_path / "p", fractions=(1.0, 0.0, 0.0), workers=0)
    assert meta["n_structures"] == 1 and len(meta["failures"]) == 1
    assert str(bad) in meta["failures"][0]
    with pytest.raises(InputError, match="not a finished training pack"):
        load_pack(tmp_path / "nothing")
