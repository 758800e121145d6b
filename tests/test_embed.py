"""`holoprot embed` and the Python API: invariance from atoms, identity columns, resume, errors.

The behaviour tests use a small randomly initialised model saved to a temporary folder (the
invariance of the latent and the equivariance of the frame hold for any weights); the shipped
weights have their own tests in test_weights.py.

Tolerance: 1e-4 relative for latents of rotated atoms in float32, as the issue states; the
float32 projection of a rotated structure differs by ~1e-6 relative and the encoder amplifies
rounding by at most ~10× (small nets are the worst case, see shared/reference/README.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from e3nn import o3
from typer.testing import CliRunner

import holoprot
from holoprot.cli import app
from holoprot.embedding.embedder import Embedder
from holoprot.errors import HoloprotError
from holoprot.io.output import ResidueTableWriter
from holoprot.io.structure import read_structure
from holoprot.model import HVAE, HVAEConfig, save_model
from holoprot.zernike.neighborhoods import extract_neighborhoods

DATA = Path(__file__).parent / "data" / "structures"
EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
runner = CliRunner()


def test_latents_invariant_and_frames_rotate_with_the_atoms(weights: Path) -> None:
    """Rotate (and translate) the atoms of a real structure in memory — no file rounding — and
    run parse → neighbourhoods → projection → encoder on both copies."""
    embedder = Embedder(weights, device="cpu")
    structure = read_structure(EXAMPLES / "1hvr.pdb")
    torch.manual_seed(3)
    for _ in range(3):
        rot = o3.rand_matrix(dtype=torch.float64).numpy()
        moved = dataclasses.replace(structure, coords=structure.coords @ rot.T + [3.0, -7.0, 11.0])
        runs = []
        for s in (structure, structure, moved):
            coefficients = embedder.basis.project_neighborhoods(extract_neighborhoods(s))
            runs.append(embedder.embed_coefficients(coefficients))
        a, b, c = runs
        np.testing.assert_array_equal(a.latent, b.latent)  # deterministic
        assert np.abs(c.latent - a.latent).max() <= 1e-4 * np.abs(a.latent).max()
        assert np.abs(c.frame - a.frame @ rot.T).max() <= 1e-3
        assert np.abs(c.frame - a.frame).max() > 0.1  # the frames did move
        eye = np.broadcast_to(np.eye(3), a.frame.shape)
        np.testing.assert_allclose(a.frame @ a.frame.transpose(0, 2, 1), eye, atol=1e-5)


def test_identity_columns(weights: Path) -> None:
    files = [DATA / "1gbt.cif", DATA / "1a8o.pdb", EXAMPLES / "1hvr.pdb"]
    df = holoprot.embed(files, weights)
    for path in files:
        s = read_structure(path)
        rows = df[df.source_path == str(path)]
        aa = s.is_amino_acid & np.isin(
            np.arange(s.n_residues), s.residue_index[s.atom_name == "CA"]
        )
        assert list(rows.chain) == list(s.chain[aa])
        assert list(rows.residue_number) == list(s.seq_num[aa])
        assert list(rows.insertion_code) == list(s.icode[aa])
        assert list(rows.residue_name) == list(s.res_name[aa])
    assert set(df[df.structure_id == "1hvr"].chain) == {"A", "B"}
    gbt = df[df.structure_id == "1gbt"]
    assert {("184", ""), ("184", "A")} <= {
        (str(n), i) for n, i in zip(gbt.residue_number, gbt.insertion_code, strict=True)
    }
    mse = df[df.residue_name == "MSE"]
    assert (
        len(mse) > 0
        and mse.nonstandard.all()
        and not df[df.residue_name == "GLY"].nonstandard.any()
    )
    assert df.latent.iloc[0].shape == (16,)


def test_chains_filter_and_table_api(weights: Path) -> None:
    table = holoprot.embed_table(EXAMPLES / "1hvr.pdb", weights, chains=["B"])
    assert set(table.column("chain").to_pylist()) == {"B"} and table.num_rows == 99
    assert b"weights_sha256" in table.schema.metadata


def test_cli_writes_parquet_with_metadata_and_resumes(weights: Path, tmp_path: Path) -> None:
    files = [EXAMPLES / "1hvr.pdb", DATA / "1a8o.pdb", EXAMPLES / "4zhl.cif"]
    full = tmp_path / "full.parquet"
    args = ["--weights", str(weights), "--workers", "0", "--frames"]
    result = runner.invoke(app, ["embed", *map(str, files), "-o", str(full), *args])
    assert result.exit_code == 0, result.output
    table = pq.read_table(full)
    assert table.schema.field("latent").type.list_size == 16
    assert table.schema.field("frame").type.list_size == 9
    meta = table.schema.metadata
    assert b"weights_sha256" in meta and b"basis" in meta and b"holoprot_version" in meta
    # interrupted after two files: their rows sit in parts; --resume finishes the job
    out = tmp_path / "resumed.parquet"
    killed = ResidueTableWriter(out, table.schema.remove_metadata(), meta, part_rows=1)
    for source in map(str, files[:2]):
        killed.write(table.filter(pc.equal(table.column("source_path"), source)))
    result = runner.invoke(app, ["embed", *map(str, files), "-o", str(out), "--resume", *args])
    assert result.exit_code == 0, result.output
    assert_same_embeddings(pq.read_table(out), table)


def assert_same_embeddings(got: pa.Table, want: pa.Table) -> None:
    """Same schema, metadata and identity columns; latents and frames equal to float32 rounding:
    1e-5 of each row's norm (a resumed run encodes the files left in other batches, and BLAS
    sums a row differently by its place in the batch; observed ≤ 1.2e-6)."""
    assert got.schema.equals(want.schema, check_metadata=True)
    vectors = {"latent", "frame"} & set(want.column_names)
    for name in want.column_names:
        if name not in vectors:
            assert got.column(name).equals(want.column(name)), name
    for name in vectors:
        a, b = (np.stack(t.column(name).to_numpy(zero_copy_only=False)) for t in (got, want))
        err = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
        assert err.max() <= 1e-5, (name, err.max())


def test_resume_refuses_other_weights(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.parquet"
    base = ["embed", str(EXAMPLES / "1hvr.pdb"), "-o", str(out), "--workers", "0"]
    assert runner.invoke(app, [*base, "--weights", str(weights)]).exit_code == 0
    torch.manual_seed(1)
    other = save_model(
        HVAE(HVAEConfig(latent_dim=16, ch_initial=8, ch_sizes=(8, 8, 8, 8, 16, 16))).eval(),
        tmp_path / "other",
        {},
    )
    result = runner.invoke(app, [*base, "--weights", str(other), "--resume"])
    assert result.exit_code == 1 and "other settings or weights" in result.output


def test_bad_weights_and_inputs(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(HoloprotError, match="not found"):
        holoprot.embed(EXAMPLES / "1hvr.pdb", "no-such-weights")
    tampered = tmp_path / "t"
    for suffix in (".safetensors", ".json"):
        tampered.with_suffix(suffix).write_bytes(weights.with_suffix(suffix).read_bytes())
    data = bytearray(tampered.with_suffix(".safetensors").read_bytes())
    data[-1] ^= 0xFF
    tampered.with_suffix(".safetensors").write_bytes(bytes(data))
    with pytest.raises(HoloprotError, match="sha256"):
        holoprot.embed(EXAMPLES / "1hvr.pdb", tampered.with_suffix(".safetensors"))
    bad = tmp_path / "bad.pdb"
    bad.write_text("HEADER nothing here\n")
    result = runner.invoke(
        app, ["embed", str(bad), "-o", str(tmp_path / "x.parquet"), "--weights", str(weights)]
    )
    assert result.exit_code == 1 and str(bad) in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app,
        [
            "embed",
            str(EXAMPLES / "1hvr.pdb"),
            "-o",
            str(tmp_path / "x.parquet"),
            "--weights",
            str(weights),
            "--batch-size",
            "0",
        ],
    )
    assert result.exit_code == 1 and "batch-size" in result.output
