"""One giant file in bounded chunks (issue #30): a file's residues go through `chunk_residues` at a
time (neighbourhoods → projection → encoder → writer), and the rows, their order and the output
bytes are those of one pass over the whole file; a kill in the middle of a file commits none of
its rows; a long mmCIF ``_atom_site`` loop is parsed in pieces with the same atoms.

The giant structure (`assembly`): three copies of 1hvr (chains A and B, 198 residues, ligand and
modified residues) 6 Å apart, as one PDB file with chains A–F, 594 residues: the copies
interpenetrate, so neighbourhoods hold atoms of other chains and copies, and every chunk boundary
cuts between residues that are in each other's neighbourhoods. Chunks of 7, 64 and 250 residues
(250 does not divide 594) against one chunk of the whole file.

No tolerance anywhere: each neighbourhood is computed from the same float64 values in the same
order whatever the chunk, the projection kernel works neighbourhood by neighbourhood, and the
encoder is given the same batches (checked batch by batch: float32 sums may depend on the batch).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import holoprot.io.structure as structure_module
from holoprot.cli import app
from holoprot.embedding.embedder import Embedder
from holoprot.io.output import ResidueTableWriter
from holoprot.io.structure import read_structure
from holoprot.io.tables import IDENTITY_SCHEMA, file_metadata, vector_field
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import extract_neighborhoods
from holoprot.zernike.pipeline import (
    FailedInput,
    ProjectionSettings,
    iter_projected_chunks,
    project_chunks,
)

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "structures"
DATA = Path(__file__).parent / "data" / "structures"
WHOLE = 10**6  # residues per chunk: every file in one chunk
runner = CliRunner()


def _copies() -> list[tuple[str, str, float]]:
    """(line, chain, x shift) of every atom record of the assembly, in file order."""
    lines = [
        line
        for line in (EXAMPLES / "1hvr.pdb").read_text().splitlines()
        if line.startswith(("ATOM", "HETATM"))
    ]
    return [
        (line, "ABCDEF"[2 * k + "AB".index(line[21])], 6.0 * k) for k in range(3) for line in lines
    ]


CIF_COLUMNS = ("group_PDB", "id", "label_atom_id", "type_symbol", "label_alt_id", "label_comp_id",
               "label_asym_id", "auth_seq_id", "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y",
               "Cartn_z", "occupancy", "auth_asym_id", "pdbx_PDB_model_num")  # fmt: skip


def assembly(folder: Path, fmt: str = "pdb") -> Path:
    """The giant structure of the module docstring, as PDB or as mmCIF (same atoms)."""
    out = folder / f"assembly.{'pdb' if fmt == 'pdb' else 'cif'}"
    rows = []
    for serial, (line, chain, shift) in enumerate(_copies(), 1):
        x = float(line[30:38]) + shift
        if fmt == "pdb":
            rows.append(f"{line[:21]}{chain}{line[22:30]}{x:8.3f}{line[38:]}")
        else:
            rows.append(
                f"{line[:6].strip()} {serial} {line[12:16].strip()} {line[76:78].strip()}"
                f" {line[16].strip() or '.'} {line[17:20]} {chain} {line[22:26].strip()}"
                f" {line[26].strip() or '?'} {x:.3f} {line[38:46].strip()} {line[46:54].strip()}"
                f" {line[54:60].strip()} {chain} 1"
            )
    if fmt == "pdb":
        out.write_text("\n".join([*rows, "END", ""]))
    else:
        header = ["data_assembly", "loop_", *(f"_atom_site.{n}" for n in CIF_COLUMNS)]
        out.write_text("\n".join([*header, *rows, "#", ""]))
    return out


@pytest.fixture(scope="module")
def giant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assembly(tmp_path_factory.mktemp("giant"))


def test_chunks_equal_the_whole_file_across_chunk_boundaries(giant: Path) -> None:
    structure = read_structure(giant)
    nbh = extract_neighborhoods(structure)
    basis = ZernikeBasis()
    expected = basis.coefficients(nbh)
    assert len(nbh) == 594 and set(structure.chain) == set("ABCDEF")
    for chunk in (7, 64, 250):
        chunks = list(project_chunks(giant, ProjectionSettings(basis, chunk_residues=chunk)))
        starts = list(range(0, 594, chunk))
        assert [c.start for c in chunks] == starts and {c.total for c in chunks} == {594}
        assert [c.last for c in chunks] == [False] * (len(starts) - 1) + [True]
        got = np.concatenate([c.coefficients for c in chunks])
        np.testing.assert_array_equal(got, expected)
        identity = pa.concat_tables([c.identity for c in chunks])
        assert identity.column("atom_count").to_pylist() == np.diff(nbh.offsets).tolist()
        # the test means something: every boundary cuts through a neighbourhood
        for start in starts[1:]:
            before = nbh.atom_index[nbh.offsets[start - 1] : nbh.offsets[start]]
            later = structure.residue_index[before] >= nbh.residue_index[start]
            assert later.any(), (chunk, start)


def _zernike(giant: Path, out: Path, *extra: object) -> None:
    files = [giant, DATA / "1a8o.pdb", EXAMPLES / "1hvr.pdb"]
    args = ["zernike", *files, "-o", out, "--workers", "0", *extra]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def test_zernike_rows_and_bytes_do_not_depend_on_the_chunk(giant: Path, tmp_path: Path) -> None:
    _zernike(giant, tmp_path / "whole.parquet", "--chunk-residues", WHOLE)
    _zernike(giant, tmp_path / "whole", "--chunk-residues", WHOLE)
    whole = (tmp_path / "whole.parquet").read_bytes()
    parts = sorted((tmp_path / "whole").glob("part-*.parquet"))
    for chunk in (7, 250):
        _zernike(giant, tmp_path / f"c{chunk}.parquet", "--chunk-residues", chunk)
        assert (tmp_path / f"c{chunk}.parquet").read_bytes() == whole
        _zernike(giant, tmp_path / f"c{chunk}", "--chunk-residues", chunk)
        got = sorted((tmp_path / f"c{chunk}").glob("part-*.parquet"))
        assert [p.read_bytes() for p in got] == [p.read_bytes() for p in parts]


def _batches_seen(embedder: Embedder) -> list[np.ndarray]:
    """Make `embedder` record every batch its encoder is given (a copy of its rows)."""
    seen: list[np.ndarray] = []
    encode = embedder.encode_batch

    def recording(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(x.copy())
        return encode(x)

    embedder.encode_batch = recording
    return seen


def _grouped(embedder: Embedder, files: list[Path]) -> np.ndarray:
    """Latents as `Embedder.iter_files` made them before issue #30: whole files; after the file
    that brings the rows since the last group to `batch_size` or more, the group is encoded in
    batches from its first row (the last one partial)."""
    settings = embedder.settings()
    groups, pending = [], []
    for path in files:
        pending.append(np.concatenate([c.coefficients for c in project_chunks(path, settings)]))
        if sum(map(len, pending)) >= embedder.batch_size:
            groups.append(np.concatenate(pending))
            pending = []
    groups += [np.concatenate(pending)] if pending else []
    return np.concatenate([embedder.embed_coefficients(g).latent for g in groups])


def test_embed_batches_and_latents_do_not_depend_on_the_chunk(weights: Path, giant: Path) -> None:
    """Batches of 50 straddle chunk and file boundaries: the encoder is given the same batches,
    row for row, as before chunking (float32 sums may depend on the batch, so the batches
    themselves are compared), and the latents land on the same rows."""
    files = [DATA / "1a8o.pdb", giant, EXAMPLES / "1hvr.pdb", giant.with_name("copy.pdb")]
    files[-1].write_bytes(files[0].read_bytes())
    reference = Embedder(weights, "cpu", 50, chunk_residues=WHOLE)
    expected_batches = _batches_seen(reference)
    expected = _grouped(reference, files)
    assert {len(b) for b in expected_batches} > {50}  # partial batches too
    tables = {}
    for chunk in (7, 64, WHOLE):
        embedder = Embedder(weights, "cpu", 50, chunk_residues=chunk)
        batches = _batches_seen(embedder)
        items = list(embedder.iter_chunks(files, frames=True, workers=0))
        assert all(len(i.table) <= chunk for i in items)
        assert [i.source for i in items if i.last] == list(map(str, files))
        assert len(batches) == len(expected_batches)
        for got, want in zip(batches, expected_batches, strict=True):
            np.testing.assert_array_equal(got, want)
        tables[chunk] = pa.concat_tables([i.table for i in items])
        latent = np.stack(tables[chunk].column("latent").to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(latent, expected)
    assert tables[7].equals(tables[WHOLE]) and tables[64].equals(tables[WHOLE])


def test_embed_command_bytes_do_not_depend_on_the_chunk(
    weights: Path, giant: Path, tmp_path: Path
) -> None:
    outputs = []
    for chunk in (WHOLE, 64):
        out = tmp_path / f"c{chunk}.parquet"
        args = ["embed", giant, DATA / "1a8o.pdb", "-o", out, "--weights", weights]
        args += ["--workers", "0", "--batch-size", "50", "--chunk-residues", chunk]
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_worker_processes_stream_a_giant_file_through_a_temporary_file(
    giant: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker writes a file of several chunks to a temporary Arrow file, read back a chunk at a
    time and deleted; a file of one chunk and a failure come back as they are."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    bad = tmp_path / "bad.pdb"
    bad.write_text("HEADER    NOT A STRUCTURE\nEND\n")
    files = [giant, bad, DATA / "1a8o.pdb"]
    settings = ProjectionSettings(chunk_residues=64)
    local = list(iter_projected_chunks(files, settings, workers=0))
    remote = list(iter_projected_chunks(files, settings, workers=1))
    assert len(remote) == len(local) and [i.source for i in local[:10]] == [str(giant)] * 10
    for a, b in zip(local, remote, strict=True):
        if isinstance(a, FailedInput):
            assert a == b
            continue
        assert (a.source, a.start, a.total, a.last) == (b.source, b.start, b.total, b.last)
        assert a.identity.equals(b.identity)
        np.testing.assert_array_equal(a.coefficients, b.coefficients)
    assert list(tmp_path.iterdir()) == [bad]  # the temporary folder is gone


SCHEMA = pa.schema([*IDENTITY_SCHEMA, vector_field("latent", 4)])
META = file_metadata({"test": True})


def _rows(source: str, start: int, n: int) -> pa.Table:
    """Rows start … start + n of a made-up input."""
    values = np.arange(start, start + n, dtype=np.float32)
    return pa.Table.from_pydict(
        {
            "structure_id": [Path(source).stem] * n,
            "source_path": [source] * n,
            "model": [1] * n,
            "chain": ["A"] * n,
            "residue_number": list(range(start, start + n)),
            "insertion_code": [""] * n,
            "residue_name": ["ALA"] * n,
            "nonstandard": [False] * n,
            "atom_count": [7] * n,
            "latent": pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(values, 4)), 4),
        },
        schema=SCHEMA,
    )


#: Inputs (source, rows, chunk): `b` comes in chunks of 10 rows, the others whole.
INPUTS = [("in/a.pdb", 12, 12), ("in/b.pdb", 45, 10), ("in/c.pdb", 5, 5)]

KILLED = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from holoprot.io.output import ResidueTableWriter
    from test_giant import INPUTS, META, SCHEMA, _rows
    writer = ResidueTableWriter(sys.argv[1], SCHEMA, META, part_rows=1, row_group_rows=4)
    kill_at = int(sys.argv[2])
    writes = 0
    for source, n, chunk in INPUTS:
        for start in range(0, n, chunk):
            if writes == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            writer.write(_rows(source, start, min(chunk, n - start)), last=start + chunk >= n)
            writes += 1
    writer.commit()
    """
)


@pytest.mark.parametrize("kill_at", [2, 4, 5])
def test_a_kill_inside_a_file_commits_none_of_its_rows(tmp_path: Path, kill_at: int) -> None:
    """Parts of one row close at input boundaries only; killed after 1, 3 or 4 of the 5 chunks
    of `b`, a resumed run keeps `a` only and writes the same bytes as an uninterrupted one."""
    out = tmp_path / "out.parquet"
    script = KILLED.format(root=str(ROOT), tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", script, str(out), str(kill_at)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    writer = ResidueTableWriter(out, SCHEMA, META, resume=True, part_rows=1, row_group_rows=4)
    assert writer.done == {"in/a.pdb"}
    for source, n, chunk in INPUTS[1:]:
        for start in range(0, n, chunk):
            writer.write(_rows(source, start, min(chunk, n - start)), last=start + chunk >= n)
    writer.commit()
    whole = ResidueTableWriter(tmp_path / "whole.parquet", SCHEMA, META, row_group_rows=4)
    for source, n, _ in INPUTS:
        whole.write(_rows(source, 0, n))
    whole.commit()
    assert out.read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_commit_inside_a_file_is_refused(tmp_path: Path) -> None:
    writer = ResidueTableWriter(tmp_path / "out.parquet", SCHEMA, META)
    writer.write(_rows("in/b.pdb", 0, 10), last=False)
    with pytest.raises(ValueError, match="last rows"):
        writer.commit()


@pytest.mark.parametrize(
    ("path", "model"),
    [
        (DATA / "1gbt.cif", None),  # insertion codes, altlocs, ions, ligand, waters
        (DATA / "1lcd_nmr.cif.gz", None),  # three models, gzipped
        (DATA / "1lcd_nmr.cif.gz", 2),
        (EXAMPLES / "4zhl.cif", None),
        ("assembly", None),
    ],
)
def test_mmcif_read_in_pieces_equals_the_whole_document(
    path: Path | str, model: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "assembly":
        path = assembly(tmp_path, "cif")
    whole = read_structure(path, model)
    for size in (300, 5000):  # a few residues, a few dozen residues per piece
        monkeypatch.setattr(structure_module, "_PIECE_BYTES", size)
        text = structure_module._read_text(path)
        _, spans = structure_module._atom_site_pieces(text)
        assert len(spans) > 3
        got = read_structure(path, model)
        for name, value in vars(whole).items():
            other = getattr(got, name)
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype and np.array_equal(value, other), name
            else:
                assert value == other, name


def test_mmcif_that_cannot_be_cut_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows over two lines (legal mmCIF) leave no safe cut: read whole, same atoms; a missing
    model says which exist, as a whole read does."""
    monkeypatch.setattr(structure_module, "_PIECE_BYTES", 300)
    path = assembly(tmp_path, "cif")
    text = path.read_text().splitlines()
    text = [line.replace(" ", "\n", 1) if line[:4] in ("ATOM", "HETA") else line for line in text]
    wrapped = tmp_path / "wrapped.cif"
    wrapped.write_text("\n".join(text) + "\n")
    assert structure_module._atom_site_pieces(wrapped.read_bytes()) is None
    np.testing.assert_array_equal(read_structure(wrapped).coords, read_structure(path).coords)
    with pytest.raises(Exception, match=r"has no model 3 \(1 model\(s\): 1\)"):
        read_structure(path, 3)


def test_ray_datasink_joins_the_pieces_of_an_input_split_across_write_tasks(
    tmp_path: Path,
) -> None:
    """Without a cluster: write tasks get an input's rows in runs, out of order; it becomes one
    part of its own, in row order, the inputs a task holds whole go to that task's part, an input
    that failed half way leaves nothing, and no hidden piece remains."""
    pytest.importorskip("ray.data")
    from holoprot.embedding.distributed import (
        ERROR_COLUMN,
        ROW_COLUMN,
        ROWS_COLUMN,
        _datasink_class,
    )

    def rows(source: str, start: int, n: int, total: int) -> pa.Table:
        table = _rows(source, start, n).append_column(ERROR_COLUMN, pa.nulls(n, pa.string()))
        table = table.append_column(ROW_COLUMN, pa.array(range(start, start + n), pa.int64()))
        return table.append_column(ROWS_COLUMN, pa.array([total] * n, pa.int64()))

    failure = rows("in/x.pdb", 0, 1, 1).slice(0, 0)
    failure = pa.concat_tables([failure, pa.Table.from_pylist(
        [{"source_path": "in/x.pdb", ERROR_COLUMN: "in/x.pdb: out of memory"}], failure.schema
    )])  # fmt: skip
    sink = _datasink_class()(str(tmp_path), SCHEMA, 10)
    (tmp_path / ".piece-left-by-a-killed-run.parquet").write_bytes(b"x")
    sink.on_write_start()
    assert not list(tmp_path.glob(".*"))
    tasks = [
        [rows("in/b.pdb", 20, 15, 45), rows("in/a.pdb", 0, 12, 12), rows("in/x.pdb", 0, 3, 9)],
        [rows("in/b.pdb", 35, 10, 45), rows("in/b.pdb", 0, 10, 45), failure],
        [rows("in/c.pdb", 0, 5, 5), rows("in/b.pdb", 10, 10, 45)],
    ]
    returns = [sink.write(blocks, None) for blocks in tasks]
    sink.on_write_complete(SimpleNamespace(write_returns=returns))
    result = sink.result
    assert result.failures == [("in/x.pdb", "in/x.pdb: out of memory")]
    assert (result.rows, result.inputs, len(result.files)) == (62, 3, 3)
    assert not list(tmp_path.glob(".*"))
    by_source = {}
    for file in result.files:
        table = pq.read_table(file)
        assert table.schema.equals(SCHEMA, check_metadata=False)
        sources = table.column("source_path").unique().to_pylist()
        for source in sources:
            by_source[source] = table.filter(pc.equal(table.column("source_path"), source))
    assert sorted(by_source) == ["in/a.pdb", "in/b.pdb", "in/c.pdb"]
    for source, n, _ in INPUTS:
        assert by_source[source].equals(_rows(source, 0, n)), source


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "zernike",
            str(DATA / "1a8o.pdb"),
            "-o",
            str(tmp_path / "z.parquet"),
            "--chunk-residues",
            "0",
        ],
    )
    assert result.exit_code == 1 and "--chunk-residues" in result.output
    with pytest.raises(ValueError, match="chunk_residues"):
        ProjectionSettings(chunk_residues=0)
