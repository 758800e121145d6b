"""Crafted inputs cannot make holoprot do unbounded work (issue #28, item 5): a gzip bomb, an
oversized remote file and a weights description asking for huge layers are refused in one line,
before the memory they ask for is taken."""

from __future__ import annotations

import gzip
import json
import shutil
import tracemalloc
import zlib
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from holoprot._util.hashing import seal, sha256_file
from holoprot.cli import app
from holoprot.embedding.distributed import _fetch
from holoprot.errors import HoloprotError, InputError
from holoprot.io.structure import read_structure
from holoprot.model import serialization
from holoprot.model.hvae import HVAE
from holoprot.model.serialization import load_model_file
from holoprot.model.weights import model_files, resolve_weights

EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
LIMIT = 1_000_000


def _bomb(path: Path, inflated: int) -> Path:
    """A gzip file of `inflated` zero bytes: ~1,000 times smaller than what it inflates to."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(inflated >> 20):
            fh.write(compressor.compress(chunk))
        fh.write(compressor.flush())
    return path


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", str(LIMIT))
    bomb = _bomb(tmp_path / "bomb.pdb.gz", 64 << 20)
    assert bomb.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"bomb\.pdb\.gz.*inflates to more than 1,000,000"):
            read_structure(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python-level allocations stay near the limit (plus the compressed file), far below the
    # 64 MiB the file inflates to; gzip.decompress would hold all of it.
    assert peak < 8 * LIMIT, peak


def test_structures_within_the_limit_are_read(tmp_path: Path, monkeypatch) -> None:
    gz = EXAMPLES / "1a28.pdb.gz"
    size = len(gzip.decompress(gz.read_bytes()))
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", str(size))
    assert read_structure(gz).n_atoms > 0
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", str(size - 1))
    with pytest.raises(InputError, match="inflates to more than"):
        read_structure(gz)
    plain = EXAMPLES / "1hvr.pdb"
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", str(plain.stat().st_size - 1))
    with pytest.raises(InputError, match=r"1hvr\.pdb.*more than"):
        read_structure(plain)


def test_bad_limit_setting_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", "lots")
    with pytest.raises(InputError, match="HOLOPROT_MAX_STRUCTURE_BYTES"):
        read_structure(EXAMPLES / "1hvr.pdb")


def test_gzip_bomb_through_the_command_is_one_line(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.pdb.gz", 16 << 20)
    out = tmp_path / "out.parquet"
    result = CliRunner(env={"HOLOPROT_MAX_STRUCTURE_BYTES": str(LIMIT)}).invoke(
        app, ["zernike", str(bomb), "-o", str(out), "--workers", "0"]
    )
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and "bomb.pdb.gz" in lines[0] and "inflates" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.pdb.gz"]


def test_remote_input_is_copied_in_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "big.pdb"
    source.write_bytes(b"REMARK" + bytes(3 * LIMIT))
    local = tmp_path / "local.pdb"
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", str(LIMIT))
    fs = pafs.LocalFileSystem()
    with pytest.raises(InputError, match=r"file://.*big\.pdb.*more than 1,000,000"):
        _fetch(fs, str(source), local, f"file://{source}")
    assert local.stat().st_size <= LIMIT
    monkeypatch.setenv("HOLOPROT_MAX_STRUCTURE_BYTES", str(4 * LIMIT))
    _fetch(fs, str(source), local, f"file://{source}")
    assert local.read_bytes() == source.read_bytes()


def _sealed_description(weights: Path, config: dict) -> None:
    sidecar = weights.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    info["config"] = config
    info["sha256"] = sha256_file(weights)  # an attacker recomputes both checksums
    sidecar.write_text(json.dumps(seal(info)))


def test_description_asking_for_huge_layers_is_refused_before_allocating(
    tmp_path: Path, monkeypatch
) -> None:
    for source in model_files(resolve_weights("default")):
        shutil.copy(source, tmp_path / f"w{source.suffix}")
    weights = tmp_path / "w.safetensors"
    config = json.loads(weights.with_suffix(".json").read_text())["config"]
    # ~7e9 parameters (28 GB of float32) if the layers were built before the shapes are checked.
    config["ch_sizes"] = [4096] * 6
    _sealed_description(weights, config)

    def meta_only(config, device=None):  # noqa: ANN001, ANN202
        assert device == "meta", "layers built before the shape check"
        return HVAE(config, device)

    monkeypatch.setattr(serialization, "HVAE", meta_only)
    with pytest.raises(HoloprotError, match=r"w\.safetensors: tensor .* config needs F32 of shape"):
        load_model_file(weights)


def test_tensors_missing_from_the_file_are_named(tmp_path: Path) -> None:
    for source in model_files(resolve_weights("default")):
        shutil.copy(source, tmp_path / f"w{source.suffix}")
    weights = tmp_path / "w.safetensors"
    state = load_file(str(weights))
    state.pop(sorted(state)[0])
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    _sealed_description(weights, json.loads(weights.with_suffix(".json").read_text())["config"])
    with pytest.raises(HoloprotError, match="tensors do not match the config"):
        load_model_file(weights)
