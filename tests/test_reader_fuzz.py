"""Property-based: the structure reader on random bytes and on truncated or corrupted real files
(PDB and mmCIF, plain and gzipped) either reads a structure or raises a one-line InputError
naming the file — never another exception, and never a hang (each case runs under an alarm)."""

from __future__ import annotations

import gzip
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holoprot.errors import InputError
from holoprot.io.structure import read_structure

STRUCTURES = Path(__file__).parent / "data" / "structures"
EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
REAL = {
    "pdb": (EXAMPLES / "1hvr.pdb").read_bytes(),
    "mmcif": (EXAMPLES / "4zhl.cif").read_bytes(),
    "pdb_altloc": gzip.decompress((STRUCTURES / "19hc.pdb.gz").read_bytes()),
    "mmcif_nmr": gzip.decompress((STRUCTURES / "1lcd_nmr.cif.gz").read_bytes()),
}
HANG_GUARD_S = 30  # far above any real parse of these files; only a hang reaches it

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@contextmanager
def hang_guard() -> Iterator[None]:
    def on_alarm(signum, frame):  # noqa: ANN001
        raise TimeoutError(f"reader still running after {HANG_GUARD_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_reader(path: Path, data: bytes, gzipped: bool) -> None:
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    with hang_guard():
        try:
            structure = read_structure(path)
        except InputError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message, message
            return
    assert structure.n_atoms > 0 and np.isfinite(structure.coords).all()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "fuzz.pdb"


@FUZZ
@given(data=st.binary(max_size=4096), gzipped=st.booleans())
def test_random_bytes(target: Path, data: bytes, gzipped: bool) -> None:
    check_reader(target, data, gzipped)


@FUZZ
@given(name=st.sampled_from(sorted(REAL)), cut=st.floats(0, 1), gzipped=st.booleans())
def test_truncated_real_files(target: Path, name: str, cut: float, gzipped: bool) -> None:
    data = REAL[name]
    check_reader(target, data[: int(cut * len(data))], gzipped)


@FUZZ
@given(
    name=st.sampled_from(sorted(REAL)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)), max_size=12),
    gzipped=st.booleans(),
)
def test_corrupted_real_files(
    target: Path, name: str, edits: list[tuple[float, bytes]], gzipped: bool
) -> None:
    data = bytearray(REAL[name])
    for where, junk in edits:
        start = int(where * (len(data) - 1))
        data[start : start + len(junk)] = junk
    check_reader(target, bytes(data), gzipped)


@FUZZ
@given(name=st.sampled_from(sorted(REAL)), cut=st.floats(0, 1))
def test_truncated_gzip_streams(target: Path, name: str, cut: float) -> None:
    packed = gzip.compress(REAL[name], mtime=0)
    target.write_bytes(packed[: max(1, int(cut * len(packed)))])
    with hang_guard():
        try:
            read_structure(target)
        except InputError as exc:
            assert "\n" not in str(exc)
