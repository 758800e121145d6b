"""io.output: one pass to disk, atomic commit, exact resume after a kill, dataset folders."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from holoprot.cli import app
from holoprot.errors import HoloprotError
from holoprot.io.output import (
    DATASET_MANIFEST,
    STAGING_DIR,
    SUCCESS,
    ResidueTableWriter,
    dataset_files,
    is_dataset_output,
    write_tables,
)
from holoprot.io.tables import IDENTITY_SCHEMA, file_metadata, read_metadata, vector_field

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "structures"
DATA = Path(__file__).parent / "data" / "structures"
SCHEMA = pa.schema([*IDENTITY_SCHEMA, vector_field("latent", 8)])
META = file_metadata({"test": True})
runner = CliRunner()


def input_table(i: int, rows: int) -> pa.Table:
    """The rows of a made-up input `i`: random but fixed latents."""
    rng = np.random.default_rng(i)
    columns = {
        "structure_id": [f"s{i}"] * rows,
        "source_path": [f"in/{i}.pdb"] * rows,
        "model": [1] * rows,
        "chain": ["A"] * rows,
        "residue_number": list(range(rows)),
        "insertion_code": [""] * rows,
        "residue_name": ["ALA"] * rows,
        "nonstandard": [False] * rows,
        "atom_count": rng.integers(1, 99, rows).tolist(),
    }
    latent = rng.normal(size=(rows, 8)).astype(np.float32)
    flat = pa.array(latent.reshape(-1))
    columns["latent"] = pa.FixedSizeListArray.from_arrays(flat, 8)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


SIZES = [5, 17, 3, 30, 1, 12, 9, 25, 4, 11]
WRITER_ARGS = {"part_rows": 20, "row_group_rows": 7}

# A run that SIGKILLs itself at a chosen point: after `write` number n, in the middle of the n-th
# row group written, between renaming the n-th part and recording it in the manifest, at the n-th
# rename onto the output (`publish`: the merged or single part file onto a file output; a part,
# then the dataset manifest, into a folder), or as it removes the staging folder after publishing.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path[:0] = [{root!r}, {tests!r}]
    import holoprot.io.output as out
    from test_output import META, SCHEMA, SIZES, WRITER_ARGS, input_table
    where, n, path, part_rows = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    calls = [0]

    def kill_on(name, obj):
        original = getattr(obj, name)

        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(obj, name, wrapped)

    if where == "row_group":
        import pyarrow.parquet as pq
        kill_on("write_table", pq.ParquetWriter)
    elif where == "manifest":
        kill_on("_write_manifest", out)
    elif where == "rmtree":
        kill_on("rmtree", out.shutil)
    elif where == "publish":
        replace = os.replace

        def publish(src, dst, *args, **kwargs):
            if Path(dst) == Path(path) or Path(dst).parent == Path(path):
                calls[0] += 1
                if calls[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            return replace(src, dst, *args, **kwargs)

        os.replace = publish
    writer = out.ResidueTableWriter(path, SCHEMA, META, **{{**WRITER_ARGS, "part_rows": part_rows}})
    for i, rows in enumerate(SIZES):
        if where == "write" and i == n:
            os.kill(os.getpid(), signal.SIGKILL)
        writer.write(input_table(i, rows))
    writer.commit()
    """
)


def run_killed(where: str, n: int, path: Path, part_rows: int = WRITER_ARGS["part_rows"]) -> None:
    script = CHILD.format(root=str(ROOT), tests=str(Path(__file__).parent))
    argv = [sys.executable, "-c", script, where, str(n), str(path), str(part_rows)]
    proc = subprocess.run(argv, timeout=120)
    assert proc.returncode == -9, f"the run was not killed at {where} {n}"


def resume(path: Path, part_rows: int = WRITER_ARGS["part_rows"]) -> int:
    args = {**WRITER_ARGS, "part_rows": part_rows}
    writer = ResidueTableWriter(path, SCHEMA, META, resume=True, **args)
    for i, rows in enumerate(SIZES):
        if f"in/{i}.pdb" not in writer.done:
            writer.write(input_table(i, rows))
    return writer.commit()


def write_all(path: Path, part_rows: int = WRITER_ARGS["part_rows"]) -> int:
    writer = ResidueTableWriter(path, SCHEMA, META, **{**WRITER_ARGS, "part_rows": part_rows})
    for i, rows in enumerate(SIZES):
        writer.write(input_table(i, rows))
    return writer.commit()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


KILL_POINTS = [("write", 0), ("write", 3), ("write", 9), ("row_group", 4), ("manifest", 2)]
# SIZES in parts of 20 rows: 5 parts (22, 33, 22, 25, 15 rows) in 20 row groups of 7 rows (or
# fewer), then the commit: a file output merges them in 17 row groups (row groups 21 to 37)
# into a temporary file renamed onto the output (publish 1); a folder gets the 5 parts renamed
# into it (publish 1 to 5), then its manifest (publish 6). Either way the staging folder is
# removed last (rmtree 1), after the output is complete.
FILE_KILL_POINTS = [*KILL_POINTS, ("row_group", 25), ("publish", 1), ("rmtree", 1)]
DATASET_KILL_POINTS = [*KILL_POINTS, ("publish", 3), ("publish", 6), ("rmtree", 1)]
PUBLISHED = ("rmtree", 1)  # killed after the commit made the output complete


@pytest.mark.parametrize(("where", "n"), FILE_KILL_POINTS)
def test_killed_file_run_resumes_to_the_same_bytes(tmp_path: Path, where: str, n: int) -> None:
    full = tmp_path / "full.parquet"
    assert write_all(full) == sum(SIZES)
    out = tmp_path / "out.parquet"
    run_killed(where, n, out)
    assert out.exists() == ((where, n) == PUBLISHED)  # never visible before the commit
    assert resume(out) == sum(SIZES)
    assert out.read_bytes() == full.read_bytes()
    assert not (tmp_path / "out.parquet.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.parquet", "out.parquet"]


@pytest.mark.parametrize(("where", "n"), [("publish", 1), ("rmtree", 1)])
def test_killed_single_part_file_run_resumes(tmp_path: Path, where: str, n: int) -> None:
    """One part is renamed onto the output (no merge): killed before, or after, that rename."""
    full = tmp_path / "full.parquet"
    assert write_all(full, part_rows=1000) == sum(SIZES)
    out = tmp_path / "out.parquet"
    run_killed(where, n, out, part_rows=1000)
    assert out.exists() == ((where, n) == PUBLISHED)
    assert resume(out, part_rows=1000) == sum(SIZES)
    assert out.read_bytes() == full.read_bytes()
    assert not (tmp_path / "out.parquet.partial").exists()


@pytest.mark.parametrize(("where", "n"), DATASET_KILL_POINTS)
def test_killed_dataset_run_resumes_to_the_same_files(tmp_path: Path, where: str, n: int) -> None:
    full = tmp_path / "full"
    write_all(full)
    out = tmp_path / "out"
    run_killed(where, n, out)
    renamed = len(list(out.glob("part-*.parquet")))
    if (where, n) == PUBLISHED:
        assert renamed == 5 and (out / SUCCESS).exists() and (out / STAGING_DIR).exists()
    else:  # not a readable dataset before the commit
        assert renamed == (min(n - 1, 5) if where == "publish" else 0)
        assert not (out / DATASET_MANIFEST).exists() and not (out / SUCCESS).exists()
    assert resume(out) == sum(SIZES)
    assert folder_bytes(out) == folder_bytes(full)
    assert not (out / STAGING_DIR).exists()
    assert sum(pq.read_metadata(f).num_rows for f in dataset_files(out)) == sum(SIZES)


def test_rows_in_input_order_in_fixed_row_groups(tmp_path: Path) -> None:
    out = tmp_path / "a.parquet"
    write_all(out)
    table = pq.read_table(out)
    expected = pa.concat_tables([input_table(i, n) for i, n in enumerate(SIZES)])
    assert table.equals(expected.replace_schema_metadata(table.schema.metadata))
    meta = pq.ParquetFile(out).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes[:-1] == [7] * (len(sizes) - 1) and sum(sizes) == sum(SIZES)
    assert read_metadata(out)["test"] is True


def test_dataset_folder_reads_as_one_table(tmp_path: Path) -> None:
    file, folder = tmp_path / "a.parquet", tmp_path / "a"
    write_all(file)
    write_all(folder)
    parts = sorted(p.name for p in folder.glob("part-*.parquet"))
    assert len(parts) > 1 and (folder / SUCCESS).exists()
    manifest = json.loads((folder / DATASET_MANIFEST).read_text())
    assert [p["file"] for p in manifest["parts"]] == parts
    single = pq.read_table(file)
    assert ds.dataset(folder, format="parquet").to_table().equals(single)
    assert pq.read_table(folder).equals(single)
    pd.testing.assert_frame_equal(pd.read_parquet(folder), single.to_pandas())
    assert read_metadata(folder) == read_metadata(file)


def test_resume_adds_to_a_finished_output_in_input_order(tmp_path: Path) -> None:
    out = tmp_path / "a.parquet"
    writer = ResidueTableWriter(out, SCHEMA, META, **WRITER_ARGS)
    for i in (0, 2):
        writer.write(input_table(i, SIZES[i]))
    writer.commit()
    full = tmp_path / "full.parquet"
    writer = ResidueTableWriter(full, SCHEMA, META, **WRITER_ARGS)
    for i in range(4):
        writer.write(input_table(i, SIZES[i]))
    writer.commit()
    writer = ResidueTableWriter(out, SCHEMA, META, resume=True, **WRITER_ARGS)
    assert writer.done == {"in/0.pdb", "in/2.pdb"}
    for i in (1, 3):
        writer.write(input_table(i, SIZES[i]))
    order = [f"in/{i}.pdb" for i in range(4)]
    assert writer.commit(order) == sum(SIZES[:4])
    assert out.read_bytes() == full.read_bytes()


def test_resume_refuses_other_columns_and_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "a.parquet"
    write_all(out)
    other = pa.schema([*IDENTITY_SCHEMA, vector_field("latent", 4)])
    with pytest.raises(HoloprotError, match="columns differ"):
        ResidueTableWriter(out, other, META, resume=True)
    with pytest.raises(HoloprotError, match="other settings"):
        ResidueTableWriter(out, SCHEMA, file_metadata({"test": False}), resume=True)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(HoloprotError, match="not a holoprot dataset"):
        ResidueTableWriter(folder, SCHEMA, META)


def test_write_tables_api_skips_what_is_done(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    schema = SCHEMA.with_metadata(META)
    assert write_tables([input_table(0, 5), input_table(1, 6)], folder, schema) == 11
    tables = (input_table(i, n) for i, n in enumerate([5, 6, 7]))
    assert write_tables(tables, folder, schema, resume=True) == 18
    assert pq.read_table(folder).column("residue_number").to_pylist()[-7:] == list(range(7))


def test_output_kind_from_the_name(tmp_path: Path) -> None:
    assert is_dataset_output(tmp_path / "residues")
    assert is_dataset_output(tmp_path)
    assert not is_dataset_output(tmp_path / "residues.parquet")


def test_cli_folder_output_equals_file_output_in_input_order(tmp_path: Path) -> None:
    files = [str(EXAMPLES / "4zhl.cif"), str(DATA / "1a8o.pdb"), str(EXAMPLES / "1hvr.pdb")]
    file, folder = tmp_path / "z.parquet", tmp_path / "z"
    result = runner.invoke(app, ["zernike", *files, "-o", str(file), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "3 files" in result.output and "residues/s" in result.output
    result = runner.invoke(app, ["zernike", *files, "-o", str(folder), "--workers", "0"])
    assert result.exit_code == 0, result.output
    single = pq.read_table(file)
    assert ds.dataset(folder, format="parquet").to_table().equals(single)
    assert list(dict.fromkeys(single.column("source_path").to_pylist())) == files


def test_cli_float16_coefficients_within_the_stated_error(tmp_path: Path) -> None:
    file = str(EXAMPLES / "1hvr.pdb")
    f32, f16 = tmp_path / "f32.parquet", tmp_path / "f16.parquet"
    assert runner.invoke(app, ["zernike", file, "-o", str(f32)]).exit_code == 0
    result = runner.invoke(app, ["zernike", file, "-o", str(f16), "--dtype", "float16"])
    assert result.exit_code == 0, result.output
    exact = np.stack(pq.read_table(f32).column("coefficients").to_numpy(zero_copy_only=False))
    column = pq.read_table(f16).column("coefficients")
    assert str(column.type.value_type) == "halffloat"
    half = np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32)
    bound = np.maximum(2.0**-11 * np.abs(exact), 2.0**-25)
    assert np.all(np.abs(half - exact) <= bound)
    assert np.abs(half - exact).max() > 0  # it did round
    assert f16.stat().st_size < 0.6 * f32.stat().st_size
    bad = runner.invoke(app, ["zernike", file, "-o", str(tmp_path / "x.parquet"), "--dtype", "f8"])
    assert bad.exit_code == 1 and "--dtype f8" in bad.output
