"""A full disk while `holoprot zernike` writes: one ``error:`` line naming the output, where the
finished inputs' rows are kept and ``--resume``; exit status 1; a resume after it gives the table
an uninterrupted run gives.

The disk is "filled" with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored), so that a write past
LIMIT bytes fails with EFBIG (errno 27) as a full disk fails with ENOSPC (errno 28), and parts
are one input each (PART_ROWS = 1) so that the small inputs' parts are completed first.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from holoprot.errors import HoloprotError
from holoprot.io.output import ResidueTableWriter
from holoprot.io.staging import no_space_reason

DATA = Path(__file__).parent / "data" / "structures"
EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
# parts of ≈ 0.36, 1.0 and 1.2 MB (70, 198 and 223 residues), 2.6 MB merged
FILES = [DATA / "1a8o.pdb", EXAMPLES / "1hvr.pdb", DATA / "1gbt.cif"]
MID_RUN = 700_000  # the first part fits, the second does not
AT_MERGE = 1_800_000  # every part fits, the merged file does not

# `holoprot` with one part per input
CLI = "import holoprot.io.staging as s; s.PART_ROWS = 1; from holoprot.cli import main; main()"


def holoprot(*args: object, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run `holoprot zernike FILES ARGS` in a subprocess, with files limited to `limit` bytes."""

    def limit_files() -> None:
        assert limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death, past the limit

    env = {k: v for k, v in os.environ.items() if k != "HOLOPROT_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    command = ["-m", "holoprot"] if limit is None else ["-c", CLI]
    argv = [sys.executable, *command, "zernike", *map(str, FILES), *map(str, args)]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=None if limit is None else limit_files,
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The run's one ``error:`` line, after checking it failed with status 1 and no traceback."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def manifest_sources(staging: Path) -> list[str]:
    parts = json.loads((staging / "manifest.json").read_text())["parts"]
    return [source for part in parts for source, _ in part["sources"]]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The table of an uninterrupted run."""
    out = tmp_path_factory.mktemp("full") / "full.parquet"
    proc = holoprot("-o", out, "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    return pq.read_table(out)


def test_full_disk_mid_run_keeps_finished_inputs_for_resume(tmp_path: Path, full: pa.Table) -> None:
    out = tmp_path / "z.parquet"
    staging = tmp_path / "z.parquet.partial"
    line = error_line(holoprot("-o", out, "--workers", "0", limit=MID_RUN))
    assert line.startswith(f"error: {out}: file too large (errno 27) while writing;"), line
    assert f"rows of 1 finished input are kept in {staging}:" in line, line
    assert "rerun with --resume" in line, line
    assert "Error writing bytes" not in line, line
    # the first input's part and the manifest are kept; the part being written is deleted
    assert not out.exists()
    assert manifest_sources(staging) == [str(FILES[0])]
    assert sorted(p.name for p in staging.iterdir()) == ["manifest.json", "part-000000.parquet"]

    resumed = holoprot("-o", out, "--workers", "0", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "kept the rows of 1 of 3 input(s)" in resumed.stderr
    assert pq.read_table(out).equals(full, check_metadata=True)
    assert not staging.exists()


def test_full_disk_while_merging_keeps_every_part(tmp_path: Path, full: pa.Table) -> None:
    out = tmp_path / "z.parquet"
    staging = tmp_path / "z.parquet.partial"
    line = error_line(holoprot("-o", out, "--workers", "0", limit=AT_MERGE))
    assert line.startswith(f"error: {out}: file too large (errno 27) while merging"), line
    assert f"rows of all 3 inputs are kept in {staging}:" in line, line
    assert "rerun with --resume" in line, line
    assert not out.exists()
    assert manifest_sources(staging) == [str(f) for f in FILES]
    parts = ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert sorted(p.name for p in staging.iterdir()) == ["manifest.json", *parts]

    resumed = holoprot("-o", out, "--workers", "0", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "kept the rows of 3 of 3 input(s)" in resumed.stderr
    assert pq.read_table(out).equals(full, check_metadata=True)


def test_full_disk_in_a_folder_output(tmp_path: Path, full: pa.Table) -> None:
    out = tmp_path / "residues"
    staging = out / "_temporary"
    line = error_line(holoprot("-o", out, "--workers", "0", limit=MID_RUN))
    assert line.startswith(f"error: {out}: file too large (errno 27) while writing;"), line
    assert f"rows of 1 finished input are kept in {staging}:" in line, line
    assert "rerun with --resume" in line, line
    assert manifest_sources(staging) == [str(FILES[0])]
    assert sorted(p.name for p in out.iterdir()) == ["_temporary"]

    resumed = holoprot("-o", out, "--workers", "0", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert pq.read_table(out).equals(full, check_metadata=True)
    assert not staging.exists()


# ---- the same, in process: ENOSPC as pyarrow and Python report it ------------------------------

SCHEMA = pa.schema([("source_path", pa.string()), ("value", pa.int64())])
META = {b"holoprot_version": b"test"}
PYARROW_ENOSPC = "Error writing bytes to file. Detail: [errno 28] No space left on device"


def _table(i: int, rows: int = 10) -> pa.Table:
    return pa.table({"source_path": [f"in/{i}.pdb"] * rows, "value": range(rows)}, schema=SCHEMA)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (OSError(PYARROW_ENOSPC), "no space left on device (errno 28)"),
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on device (errno 28)"),
        (OSError(errno.EFBIG, "File too large"), "file too large (errno 27)"),
        (pa.ArrowIOError("IOError: No space left on device"), "no space left on device (errno 28)"),
        (OSError(errno.EACCES, "Permission denied"), None),
        (OSError("Error writing bytes to file. Detail: [errno 5] Input/output error"), None),
        (ValueError("errno 28"), None),
    ],
)
def test_no_space_reason(exc: BaseException, reason: str | None) -> None:
    assert no_space_reason(exc) == reason


@pytest.mark.parametrize("folder", [False, True])
def test_no_space_left_while_writing_a_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: bool
) -> None:
    out = tmp_path / ("out" if folder else "out.parquet")
    expected = pa.concat_tables(_table(i) for i in range(4)).replace_schema_metadata(META)
    write_table = pq.ParquetWriter.write_table
    calls = [0]

    def full_on_the_third(self: pq.ParquetWriter, *args: object, **kwargs: object) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(PYARROW_ENOSPC)
        write_table(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_on_the_third)
    writer = ResidueTableWriter(out, SCHEMA, META, part_rows=10, row_group_rows=10)
    with pytest.raises(HoloprotError) as info:
        for i in range(4):
            writer.write(_table(i))
        writer.commit()
    staging = writer.staging
    assert str(info.value) == (
        f"{out}: no space left on device (errno 28) while writing; the rows of 2 finished inputs"
        f" are kept in {staging}: free space, then rerun with --resume to continue"
    )
    assert sorted(p.name for p in staging.iterdir()) == [
        "manifest.json",
        "part-000000.parquet",
        "part-000001.parquet",
    ]
    monkeypatch.undo()
    writer = ResidueTableWriter(out, SCHEMA, META, resume=True, part_rows=10, row_group_rows=10)
    assert writer.done == {"in/0.pdb", "in/1.pdb"}
    for i in range(2, 4):
        writer.write(_table(i))
    assert writer.commit() == 40
    assert pq.read_table(out).equals(expected, check_metadata=True)
