"""`holoprot zernike`: rows, columns, metadata, bad input, --skip-errors, atomic output, resume."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from holoprot.cli import app
from holoprot.cli._common import EXIT_SKIPPED
from holoprot.io.output import ResidueTableWriter
from holoprot.io.structure import read_structure
from holoprot.io.tables import read_metadata
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import extract_neighborhoods

DATA = Path(__file__).parent / "data" / "structures"
EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_rows_columns_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "z.parquet"
    result = run("zernike", DATA / "1gbt.cif", DATA / "1a8o.pdb", "-o", out, "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "zernike: 2 files, " in result.stderr
    one = run("zernike", DATA / "1a8o.pdb", "-o", tmp_path / "one.parquet", "--workers", "0")
    assert one.exit_code == 0 and "zernike: 1 file, " in one.stderr, one.output
    table = pq.read_table(out)
    assert table.schema.field("coefficients").type.list_size == 1708
    assert str(table.schema.field("coefficients").type.value_type) == "float"
    df = table.to_pandas()
    for path in ("1gbt.cif", "1a8o.pdb"):
        structure = read_structure(DATA / path)
        nbh = extract_neighborhoods(structure)
        rows = df[df.source_path == str(DATA / path)]
        assert len(rows) == len(nbh)
        assert list(rows.residue_number) == list(structure.seq_num[nbh.residue_index])
        assert list(rows.insertion_code) == list(structure.icode[nbh.residue_index])
        assert list(rows.atom_count) == list(nbh.n_atoms)
        expected = ZernikeBasis().project_neighborhoods(nbh, dtype=torch.float64).numpy()
        got = np.stack(rows.coefficients.to_numpy())
        np.testing.assert_allclose(got, expected, atol=1e-6 * np.abs(expected).max())
    gbt = df[df.structure_id == "1gbt"]
    ids = {f"{n}{i}" for n, i in zip(gbt.residue_number, gbt.insertion_code, strict=True)}
    assert {"184", "184A"} <= ids
    mse = df[(df.structure_id == "1a8o") & (df.residue_name == "MSE")]
    assert len(mse) > 0 and mse.nonstandard.all()
    assert not df[df.residue_name == "ALA"].nonstandard.any()
    meta = read_metadata(out)
    assert meta["basis"]["irreps"] == "44x0e+40x1e+40x2e+36x3e+36x4e+32x5e+32x6e"
    assert meta["holoprot_version"]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.pdb", b"", "empty"),
        ("garbage.pdb", bytes(range(256)) * 8, "binary"),
        ("noaa.pdb", None, "no amino-acid residue"),
    ],
)
def test_bad_input_is_one_line_error_and_nothing_written(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    bad = tmp_path / name
    if content is None:  # a heme-only file: atoms, but no amino acid
        lines = [ln for ln in (DATA / "1a8o.pdb").read_text().splitlines() if ln.startswith("ATOM")]
        het = [ln.replace("ATOM  ", "HETATM").replace(ln[17:20], "HEM") for ln in lines[:20]]
        bad.write_text("\n".join(het) + "\nEND\n")
    else:
        bad.write_bytes(content)
    out = tmp_path / "z.parquet"
    result = run("zernike", EXAMPLES / "1hvr.pdb", bad, "-o", out, "--workers", "0")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and problem in lines[0].lower(), lines
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".z.parquet.tmp*"))


def test_truncated_file_is_an_error(tmp_path: Path) -> None:
    text = (DATA / "1a8o.pdb").read_text()
    cut = text.index("ATOM", len(text) // 2) + 40  # mid-way through an ATOM line, no newline
    bad = tmp_path / "cut.pdb"
    bad.write_text(text[:cut])
    result = run("zernike", bad, "-o", tmp_path / "z.parquet")
    assert result.exit_code == 1 and str(bad) in result.output


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    result = run("zernike", tmp_path / "nope.pdb", "-o", tmp_path / "z.parquet")
    assert result.exit_code == 1 and "nope.pdb" in result.output
    (tmp_path / "empty").mkdir()
    result = run("zernike", tmp_path / "empty", "-o", tmp_path / "z.parquet")
    assert result.exit_code == 1 and "empty" in result.output


def test_skip_errors_writes_every_good_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cif.gz"
    bad.write_bytes(gzip.compress(b"data_x\nloop_\n_atom_site.id\n"))
    out = tmp_path / "z.parquet"
    good = [EXAMPLES / "1hvr.pdb", EXAMPLES / "4zhl.cif"]
    result = run("zernike", good[0], bad, good[1], "-o", out, "--skip-errors", "--workers", "0")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert "skipped 1" in result.output and str(bad) in result.output
    df = pq.read_table(out, columns=["source_path"]).to_pandas()
    assert list(dict.fromkeys(df.source_path)) == [str(p) for p in good]


def test_worker_processes_give_the_same_table(tmp_path: Path) -> None:
    files = [EXAMPLES / "1hvr.pdb", DATA / "1a8o.pdb"]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run("zernike", *files, "-o", a, "--workers", "0").exit_code == 0
    assert run("zernike", *files, "-o", b, "--workers", "2").exit_code == 0
    assert pq.read_table(a).equals(pq.read_table(b))


def test_resume_after_interruption_equals_one_run(tmp_path: Path) -> None:
    files = [EXAMPLES / "1hvr.pdb", DATA / "1a8o.pdb", EXAMPLES / "4zhl.cif"]
    full = tmp_path / "full.parquet"
    assert run("zernike", *files, "-o", full, "--workers", "0").exit_code == 0
    # a run that died after the first two files: their parts and manifest, no output file
    out = tmp_path / "resumed.parquet"
    killed = ResidueTableWriter(out, *_schema_and_metadata(full), part_rows=1)
    table = pq.read_table(full)
    for source in map(str, files[:2]):
        killed.write(table.filter(pc.equal(table.column("source_path"), source)))
    assert not out.exists()
    result = run("zernike", *files, "-o", out, "--resume", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == full.read_bytes()
    assert not (tmp_path / "resumed.parquet.partial").exists()
    assert json.loads(pq.read_schema(out).metadata[b"radius"]) == 10.0


def _schema_and_metadata(parquet: Path) -> tuple[pa.Schema, dict[bytes, bytes]]:
    schema = pq.read_schema(parquet)
    return schema.remove_metadata(), schema.metadata
