"""`holoprot embed --engine ray` joining clusters (issue #27): an address where nothing listens and
a head that refuses the client's authentication are one line each, exit status 1, nothing
written, without Ray's retry loops (the subprocess timeouts only guard against a hang: the old
behaviour took 20 s and over 2 minutes); a run prints holoprot's lines, not Ray's."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

#: One pytest-xdist worker runs every test that starts Ray (`ray stop --force` stops them all).
pytestmark = pytest.mark.xdist_group("ray")

PDB = Path(__file__).parents[1] / "examples" / "structures" / "1hvr.pdb"
RAY_NOISE = ("INFO", "streaming_executor", "logging_progress", "core_worker", "gcs_client", " W ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embed(out: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    command = [sys.executable, "-m", "holoprot", "embed", str(PDB), "-o", str(out), "--engine"]
    return subprocess.run(
        [*command, "ray", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _client_env(home: Path) -> dict[str, str]:
    """This environment without Ray's authentication settings, and a HOME without a token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return env | {"HOME": str(home)}


def test_nothing_listening_is_one_line(tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    done = _embed(tmp_path / "out", "--address", address, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: --address {address}: no Ray"), lines
    assert "ray start --head" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture
def token_head(tmp_path: Path):
    """A local Ray head requiring token authentication: (address, token)."""
    if tuple(int(p) for p in ray.__version__.split(".")[:2]) < (2, 52):
        pytest.skip(f"Ray {ray.__version__} has no token authentication (2.52+)")
    token, port = secrets.token_hex(16), _free_port()
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    start = [ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "2"]
    start += ["--include-dashboard", "false", "--disable-usage-stats"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}", token
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


def test_head_refusing_the_client_is_one_line_and_the_token_works(
    token_head: tuple[str, str], tmp_path: Path
) -> None:
    address, token = token_head
    home = tmp_path / "home"
    home.mkdir()
    env = _client_env(home)
    refused = _embed(tmp_path / "out", "--address", address, env=env, timeout=60)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1, refused.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: --address {address}: the Ray"), lines
    assert "RAY_AUTH_MODE" in lines[0] and "InvalidAuthToken" in lines[0]
    assert not (tmp_path / "out").exists()

    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    joined = _embed(tmp_path / "out", "--address", address, env=env)
    assert joined.returncode == 0, joined.stderr
    assert pq.read_table(tmp_path / "out").num_rows == 198


def test_a_run_prints_holoprots_lines_not_rays(tmp_path: Path) -> None:
    done = _embed(tmp_path / "out")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 0, done.stderr
    assert lines == [f"wrote 198 residues of 1 input(s) to {tmp_path / 'out'} (1 part file(s))"]
    assert not any(noise in done.stderr for noise in RAY_NOISE)
