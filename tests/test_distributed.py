"""`holoprot embed --engine ray` on a local Ray cluster of 2 CPUs: the same rows, schema and file
metadata as the single-machine command, failures listed without stopping the run, `--resume`,
URIs as inputs, and a killed encoder actor retried by Ray with nothing lost or duplicated.

Tolerance: latents are compared with `holoprot embed` to 1e-5 of the largest |latent| (float32
rounding: the projection runs the same kernel file by file, but the encoder sees other batch
compositions, which changes the order of some float32 sums; bench_ray.py saw 4.5e-7 on 60 BM5
files).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from holoprot._util.devices import bf16_supported
from holoprot.cli import app
from holoprot.io.tables import read_metadata

ray = pytest.importorskip("ray")

#: One pytest-xdist worker runs every test that starts Ray (`ray stop --force` stops them all).
pytestmark = pytest.mark.xdist_group("ray")

from holoprot.embedding.distributed import embed_dataset  # noqa: E402

ROOT = Path(__file__).parents[1]
GOOD = [
    ROOT / "examples" / "structures" / "1hvr.pdb",
    ROOT / "examples" / "structures" / "1a28.pdb.gz",
    ROOT / "tests" / "data" / "structures" / "1a8o.pdb",
    ROOT / "tests" / "data" / "structures" / "1gbt.cif",
]
IDENTITY = ["structure_id", "chain", "residue_number", "insertion_code", "residue_name"]
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local Ray cluster on 2 CPUs for the module (the CI machines have 2 cores)."""
    if ray.is_initialized():
        ray.shutdown()
    for attempt in range(3):  # Ray gives its raylet 30 s to start: a loaded machine may miss it
        try:
            ray.init(num_cpus=2, logging_level="WARNING", include_dashboard=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


def _bad(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.pdb"
    bad.write_text("HEADER    NOT A STRUCTURE\nEND\n")
    return bad


def _by_source(table: pa.Table) -> dict[str, pa.Table]:
    return {
        s: table.filter(pa.compute.equal(table.column("source_path"), s))
        for s in table.column("source_path").unique().to_pylist()
    }


def test_same_rows_schema_and_metadata_as_holoprot_embed(weights: Path, tmp_path: Path) -> None:
    bad = _bad(tmp_path)
    inputs = [*map(str, GOOD), str(bad)]
    single = tmp_path / "single.parquet"
    args = ["embed", *map(str, GOOD), "-o", str(single), "--weights", str(weights), "--frames"]
    assert runner.invoke(app, [*args, "--workers", "0"]).exit_code == 0

    out = tmp_path / "dataset"
    uri = f"file://{out}"  # an output folder given as a URI
    result = embed_dataset(inputs, uri, weights, frames=True, workers=1, files_per_task=2)
    assert result.failures == [
        (str(bad), f"{bad}: no atoms found (PDB records, but no ATOM/HETATM record)")
    ]
    expected = pq.read_table(single)
    assert (result.inputs, result.rows) == (len(GOOD), expected.num_rows)
    parts = sorted(out.glob("part-*.parquet"))
    assert [Path(f) for f in sorted(result.files)] == parts and not list(out.glob(".*"))
    for part in parts:  # each part file: the schema and file metadata of the single file
        assert pq.read_schema(part).equals(pq.read_schema(single), check_metadata=True)

    got = _by_source(pq.read_table(out))
    want = _by_source(expected)
    assert sorted(got) == sorted(want) == sorted(map(str, GOOD))
    for source, rows in want.items():
        assert got[source].select(IDENTITY).equals(rows.select(IDENTITY)), source
        for column in ("latent", "frame"):
            a = np.stack(got[source].column(column).to_numpy(zero_copy_only=False))
            b = np.stack(rows.column(column).to_numpy(zero_copy_only=False))
            assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), (source, column)


def test_giant_input_streams_in_chunks_into_one_part_of_its_own(
    weights: Path, tmp_path: Path
) -> None:
    """A 594-residue input in chunks of 32 (a block each) through one encoder actor and write
    tasks of about 100 rows: its rows arrive in several write tasks and are joined into one part,
    whole and in order; no hidden piece is left (the join itself: test_giant.py)."""
    from test_giant import assembly

    giant = assembly(tmp_path)
    inputs = [str(giant), str(GOOD[2])]
    single = tmp_path / "single.parquet"
    args = ["embed", *inputs, "-o", str(single), "--weights", str(weights), "--workers", "0"]
    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "dataset"
    result = embed_dataset(
        inputs, out, weights, workers=1, files_per_task=1, rows_per_part=100, chunk_residues=32
    )
    expected = pq.read_table(single)
    assert result.failures == [] and (result.inputs, result.rows) == (2, expected.num_rows)
    parts = sorted(out.glob("part-*.parquet"))
    assert [Path(f) for f in sorted(result.files)] == parts and not list(out.glob(".*"))
    holders = [set(pq.read_table(p).column("source_path").to_pylist()) for p in parts]
    assert sorted(n for h in holders for n in h) == sorted(inputs)  # each input in one part
    got, want = _by_source(pq.read_table(out)), _by_source(expected)
    assert want[str(giant)].num_rows == 594
    for source, rows in want.items():
        assert got[source].select(IDENTITY).equals(rows.select(IDENTITY)), source
        a = np.stack(got[source].column("latent").to_numpy(zero_copy_only=False))
        b = np.stack(rows.column("latent").to_numpy(zero_copy_only=False))
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), source


def test_cli_lists_failures_resumes_and_reads_uris(weights: Path, tmp_path: Path) -> None:
    bad = _bad(tmp_path)
    out = tmp_path / "dataset"
    base = ["embed", "-o", str(out), "--engine", "ray", "--weights", str(weights), "--workers", "1"]
    first = runner.invoke(app, [*base, str(GOOD[0]), str(bad)])
    assert first.exit_code == 3, first.output
    assert "skipped 1 input(s)" in first.output and f"{bad}: no atoms" in first.output
    (part,) = out.glob("part-*.parquet")
    before = (part.stat().st_mtime_ns, part.read_bytes())

    again = runner.invoke(app, [*base, str(GOOD[0])])
    assert again.exit_code == 1 and "holds a dataset already" in again.output

    uri = f"file://{GOOD[2].resolve()}"
    resumed = runner.invoke(app, [*base, str(GOOD[0]), uri, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "1 input(s) already there" in resumed.output
    assert (part.stat().st_mtime_ns, part.read_bytes()) == before  # not rewritten
    table = pq.read_table(out)
    counts = table.group_by("source_path").aggregate([("chain", "count")]).to_pydict()
    assert sorted(counts["source_path"]) == sorted([str(GOOD[0]), uri])
    assert sum(counts["chain_count"]) == table.num_rows
    ids = set(
        table.filter(pa.compute.equal(table.column("source_path"), uri))["structure_id"].to_pylist()
    )
    assert ids == {"1a8o"}

    other = runner.invoke(app, [*base, str(GOOD[0]), "--resume", "--frames"])
    assert other.exit_code == 1 and "columns differ" in other.output

    # --overwrite replaces the dataset: only this run's input is left, in this run's part files.
    replaced = runner.invoke(app, [*base, uri, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert set(pq.read_table(out).column("source_path").to_pylist()) == {uri}
    assert not list(out.glob(".*")) and not part.exists()

    # --precision bf16 is asked of a worker node: refused in one line where it has no bf16
    # hardware (the dataset left as it was), else written with bf16 in the metadata.
    kept = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    bf16 = runner.invoke(app, [*base, uri, "--overwrite", "--precision", "bf16"])
    if bf16_supported("cpu"):
        assert bf16.exit_code == 0, bf16.output
        assert read_metadata(out)["precision"] == "bf16"
    else:
        assert bf16.exit_code == 1, bf16.output
        assert bf16.output.strip() == (
            "error: --precision bf16: this CPU has no bfloat16 matrix instructions"
            " (AVX-512 BF16, AMX or Arm BF16); use --precision fp32"
        )
        assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == kept


def _encoder_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapBatches(Encoder)" in cmdline:
                pids.append(int(entry.name))
    return pids


def _truncated(source: Path, out: Path, last_residue: int) -> Path:
    """`source` (a PDB file) cut to residues numbered <= `last_residue` in every chain: inputs
    that differ in rows and in content, so rows swapped between inputs cannot go unseen."""
    lines = [
        line
        for line in source.read_text().splitlines(keepends=True)
        if not line.startswith(("ATOM", "HETATM")) or int(line[22:26]) <= last_residue
    ]
    out.write_text("".join(lines))
    return out


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process so far, in clock ticks (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_killed_encoder_worker_is_retried_nothing_lost_or_duplicated(
    weights: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    n = 12
    for i in range(n):
        _truncated(GOOD[0], inputs / f"cut{i:02d}.pdb", 30 + 6 * i)
    out = tmp_path / "dataset"
    box: dict[str, object] = {}

    def run() -> None:
        box["result"] = embed_dataset(
            [str(inputs)], out, weights, workers=1, files_per_task=1, rows_per_part=1
        )

    job = threading.Thread(target=run)
    job.start()
    killed = None
    while job.is_alive() and killed is None:
        pids = _encoder_pids()
        if pids and list(out.glob("part-*.parquet")):  # the actor has done some work
            try:
                before = _cpu_ticks(pids[0])
                time.sleep(0.05)
                busy = _cpu_ticks(pids[0]) > before
            except OSError:
                continue
            if busy:  # computing now: a batch is in flight
                parts_at_kill = len(list(out.glob("part-*.parquet")))
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.01)
    job.join()
    assert killed is not None and parts_at_kill < n, "the job ended before a worker was killed"
    assert killed not in _encoder_pids()

    result = box["result"]
    assert result.failures == [] and result.inputs == n
    single = tmp_path / "single.parquet"
    args = ["embed", str(inputs), "-o", str(single), "--weights", str(weights), "--workers", "0"]
    assert runner.invoke(app, args).exit_code == 0
    got, want = _by_source(pq.read_table(out)), _by_source(pq.read_table(single))
    assert sorted(got) == sorted(want) and len(want) == n
    assert len({rows.num_rows for rows in want.values()}) == n  # every input its own rows
    for source, rows in want.items():  # each input's rows once, in order, with its own latents
        assert got[source].select(IDENTITY).equals(rows.select(IDENTITY)), source
        a = np.stack(got[source].column("latent").to_numpy(zero_copy_only=False))
        b = np.stack(rows.column("latent").to_numpy(zero_copy_only=False))
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), source
