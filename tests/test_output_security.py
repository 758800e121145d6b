"""`--resume` never reads, renames or deletes a file outside the output (issue #28).

A killed run's staging manifest names its parts, and its staging folder (``OUT/_temporary``,
``out.parquet.partial``) is found by name: a manifest naming ``../../victim.parquet``, or a
staging or output folder that is a symbolic link to another folder, must be refused in one line
with nothing anywhere changed, and never end in an internal error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_output import META, SCHEMA, WRITER_ARGS, input_table, write_all
from typer.testing import CliRunner

from holoprot.errors import HoloprotError
from holoprot.io.output import (
    DATASET_MANIFEST,
    MANIFEST,
    STAGING_DIR,
    ResidueTableWriter,
    dataset_files,
)

EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
PDB = EXAMPLES / "1hvr.pdb"
ZERNIKE = ["zernike", str(PDB), "--workers", "0"]


def _snapshot(folder: Path) -> dict[str, object]:
    """Every path under `folder` (links not followed): file bytes, link targets, folders."""
    out: dict[str, object] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                out[key] = ("link", os.readlink(path))
            elif path.is_file():
                out[key] = path.read_bytes()
            else:
                out[key] = "<dir>"
    return out


def _cli(args: list[str]):
    from holoprot.cli import app

    return CliRunner(env={"HOLOPROT_DEBUG": None}).invoke(app, args)


def _assert_refused(result, names: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and names in lines[0], lines[0]


def _zernike_file(path: Path) -> Path:
    result = _cli([*ZERNIKE, "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _manifest(files: list[str]) -> str:
    parts = [{"file": f, "sources": [[str(PDB), 198]]} for f in files]
    return json.dumps({"format": "holoprot-parts-1", "parts": parts})


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_traversing_part_name_is_refused(tmp_path: Path, kind: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if kind == "folder":
        # staged `../../victim.parquet` is work/victim.parquet (a valid part of this run), its
        # destination OUT/../../victim.parquet is tmp/victim.parquet: the file to protect
        (tmp_path / "victim.parquet").write_bytes(b"precious")
        _zernike_file(work / "victim.parquet")
        out = work / "OUT"
        staging = out / STAGING_DIR
    else:  # the part would be renamed onto the output: the victim moved away from its place
        _zernike_file(tmp_path / "victim.parquet")
        out = work / "o.parquet"
        staging = work / "o.parquet.partial"
    staging.mkdir(parents=True)
    (staging / MANIFEST).write_text(_manifest(["../../victim.parquet"]))
    before = _snapshot(tmp_path)
    result = _cli([*ZERNIKE, "-o", str(out), "--resume"])
    _assert_refused(result, f"{staging / MANIFEST}: cannot resume")
    assert "'../../victim.parquet' is not one holoprot writes" in result.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
@pytest.mark.parametrize("kind", ["folder", "file"])
def test_symlinked_staging_folder_is_refused(tmp_path: Path, kind: str, flag: str) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    (other / ".part-000000.parquet.tmp").write_bytes(b"looks like ours")
    _zernike_file(other / "part-000001.parquet")
    if kind == "folder":
        out = tmp_path / "OUT"
        out.mkdir()
        link = out / STAGING_DIR
    else:
        out = tmp_path / "o.parquet"
        link = tmp_path / "o.parquet.partial"
    link.symlink_to(other, target_is_directory=True)
    before = _snapshot(tmp_path)
    result = _cli([*ZERNIKE, "-o", str(out), flag])
    _assert_refused(result, f"{link}: the staging folder of an unfinished run is a symbolic link")
    assert _snapshot(tmp_path) == before


def test_symlinked_output_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = _zernike_file(tmp_path / "elsewhere")  # a dataset folder of this run's kind
    out = tmp_path / "OUT"
    out.symlink_to(elsewhere, target_is_directory=True)
    before = _snapshot(tmp_path)
    result = _cli([*ZERNIKE, str(EXAMPLES / "4zhl.cif"), "-o", str(out), "--resume"])
    _assert_refused(result, f"{out}: the output folder is a symbolic link")
    with pytest.raises(HoloprotError, match="output folder is a symbolic link"):
        ResidueTableWriter(out, SCHEMA, META, resume=True, **WRITER_ARGS)
    assert _snapshot(tmp_path) == before


def test_committed_manifest_names_only_its_own_parts(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    write_all(out)
    manifest = json.loads((out / DATASET_MANIFEST).read_text())
    manifest["parts"][0]["file"] = "../outside.parquet"
    (out / DATASET_MANIFEST).write_text(json.dumps(manifest))
    shutil.copy(out / "part-000001.parquet", tmp_path / "outside.parquet")
    with pytest.raises(HoloprotError, match="'../outside.parquet' is not one holoprot writes"):
        dataset_files(out)
    with pytest.raises(HoloprotError, match="is not one holoprot writes"):
        ResidueTableWriter(out, SCHEMA, META, resume=True, **WRITER_ARGS)


def test_foreign_files_and_linked_parts_in_staging_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    writer = ResidueTableWriter(out, SCHEMA, META, **WRITER_ARGS)
    writer.write(input_table(0, 25))  # one complete part, then "killed"
    staging = out / STAGING_DIR
    (staging / "notes.txt").write_text("not ours")
    with pytest.raises(HoloprotError, match="holds files holoprot did not write"):
        ResidueTableWriter(out, SCHEMA, META, resume=True, **WRITER_ARGS)
    assert (staging / "notes.txt").read_text() == "not ours"
    (staging / "notes.txt").unlink()
    part = staging / "part-000000.parquet"
    outside = tmp_path / "outside.parquet"
    part.rename(outside)
    part.symlink_to(outside)
    with pytest.raises(HoloprotError, match="part is not a regular file"):
        ResidueTableWriter(out, SCHEMA, META, resume=True, **WRITER_ARGS)
    part.unlink()
    outside.rename(part)
    (staging / ".part-000001.parquet.x1y2.tmp").write_bytes(b"half a part")
    resumed = ResidueTableWriter(out, SCHEMA, META, resume=True, **WRITER_ARGS)
    assert resumed.done == {"in/0.pdb"}
    assert not (staging / ".part-000001.parquet.x1y2.tmp").exists()  # a killed run's leftover
