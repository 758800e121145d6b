"""Start-up: `--help` and `holoprot zernike` never import torch; e3nn comes without dynamo;
numba kernels compile without a cache where none can be written; default worker counts."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from holoprot.embedding import embedder as embedding
from holoprot.embedding.embedder import encoder_threads, encoder_workers
from holoprot.zernike import pipeline
from holoprot.zernike.monomials import SH_TABLE_LMAX, monomials_to_sh, solve_monomials_to_sh
from holoprot.zernike.pipeline import ProjectionSettings, default_workers, project_file

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "structures"
COMMANDS = ["zernike", "embed", "train", "train-affinity", "predict-affinity"]


def modules_after(code: str) -> dict:
    """Run `code` in a fresh interpreter (it must exit 0); which heavy modules it imported."""
    script = textwrap.dedent(
        f"""
        import atexit, json, sys
        sys.path.insert(0, {str(ROOT)!r})

        def report():
            names = (
                "torch", "torch._dynamo", "e3nn", "pandas", "scipy", "scipy.spatial",
                "sklearn", "networkx", "sympy",
            )
            sys.__stdout__.write("MODULES " + json.dumps({{n: n in sys.modules for n in names}}))

        atexit.register(report)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines()[::-1] if "MODULES " in x)
    return json.loads(line.split("MODULES ", 1)[1])


def modules_after_command(argv: list[str]) -> dict:
    """`modules_after` of the `holoprot` command line `argv`, which must succeed."""
    return modules_after(
        f"""
        sys.argv = {argv!r}
        from holoprot.cli import main
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        """
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_torch(command: str | None) -> None:
    argv = ["holoprot", "--help"] if command is None else ["holoprot", command, "--help"]
    loaded = modules_after_command(argv)
    assert not loaded["torch"] and not loaded["pandas"] and not loaded["sklearn"], loaded


def test_zernike_command_imports_no_torch(tmp_path: Path) -> None:
    out = tmp_path / "z.parquet"
    loaded = modules_after_command(
        ["holoprot", "zernike", str(EXAMPLES / "1hvr.pdb"), "-o", str(out)]
    )
    assert out.exists() and not loaded["torch"], loaded


def test_embed_command_imports_only_what_it_needs(tmp_path: Path) -> None:
    """`holoprot embed` of one file on the CPU: no torch (the NumPy encoder), no pandas (Arrow
    arrays built from buffers), no scipy.spatial (grid neighbour search), no e3nn/sympy (shipped
    CG table), no networkx (own Kruskal)."""
    out = tmp_path / "e.parquet"
    loaded = modules_after_command(
        ["holoprot", "embed", str(EXAMPLES / "1hvr.pdb"), "-o", str(out), "--device", "cpu"]
    )
    assert out.exists(), loaded
    for name in ("torch", "pandas", "scipy.spatial", "e3nn", "sympy", "networkx"):
        assert not loaded[name], (name, loaded)


def test_model_imports_e3nn_without_dynamo() -> None:
    loaded = modules_after(
        """
        from holoprot.model.so3 import wigner_d_blocks
        import torch
        wigner_d_blocks(torch.eye(3), 2)
        """
    )
    assert loaded["e3nn"] and not loaded["torch._dynamo"], loaded


def test_numba_without_a_writable_cache_compiles_and_warns() -> None:
    code = textwrap.dedent(
        f"""
        import sys, warnings
        sys.path.insert(0, {str(ROOT)!r})
        import numba.core.caching as caching
        caching.CacheImpl._locator_classes = []  # as if nothing were writable
        from holoprot._util.jit import cached_njit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            add = cached_njit()(lambda x: x + 1)
            twice = cached_njit()(lambda x: 2 * x)
        assert add(1) == 2 and twice(2) == 4
        assert len(caught) == 1 and "NUMBA_CACHE_DIR" in str(caught[0].message), caught
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shipped_spherical_harmonic_table_equals_a_fresh_solve() -> None:
    """The table's entries are rationals × square roots (up to ~1e3 at the highest degree)
    solved in float64 by least squares: rounding of e3nn's harmonics (e3nn 0.6 rounds
    differently from 0.5, which made the table) and of LAPACK leaves ≤ 2e-13 of each degree's
    largest entry; 1e-12 of it bounds that, while a wrong entry is off by a sizeable fraction."""
    for shipped, solved in zip(
        monomials_to_sh(SH_TABLE_LMAX), solve_monomials_to_sh(SH_TABLE_LMAX), strict=True
    ):
        scale = max(1.0, float(np.abs(solved).max()))
        np.testing.assert_allclose(shipped, solved, rtol=0, atol=1e-12 * scale)


def _threads_in_a_worker() -> tuple[int, int]:
    """(numba, torch) threads of a projection worker process after it has projected a file."""
    import numba
    import torch

    project_file(EXAMPLES / "1hvr.pdb", ProjectionSettings())
    return numba.get_num_threads(), torch.get_num_threads()


def test_threads_summed_over_processes_never_exceed_the_cpus(monkeypatch) -> None:
    """The README's promise, for `zernike` (projection workers + the writing process) and
    `embed` (projection workers + the encoder's torch threads), on 1 to 64 CPUs: the worker's
    thread counts are observed in a real worker process started as the pipeline starts them."""
    assert default_workers(100, cpus=2) == 0  # 2 cores: one process is faster
    assert default_workers(1, cpus=16) == 0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=pipeline._worker_init) as pool:
        per_worker = max(pool.submit(_threads_in_a_worker).result())
    assert per_worker == 1
    for cpus in range(1, 65):
        monkeypatch.setattr(pipeline, "available_cpus", lambda cpus=cpus: cpus)
        monkeypatch.setattr(embedding, "available_cpus", lambda cpus=cpus: cpus)
        for n in (1, 2, 3, 10, 1000):
            workers = default_workers(n)
            assert workers <= n
            # No workers: one process, its numba threads set to the CPUs. Else the main process
            # only writes (one thread).
            assert (cpus if workers == 0 else workers * per_worker + 1) <= cpus, (cpus, n)
            workers = encoder_workers(n)
            assert workers <= n
            assert workers * per_worker + encoder_threads(workers) <= cpus, (cpus, n)


def test_idle_threads_sleep_unless_the_user_chose() -> None:
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        os.environ.pop("OMP_WAIT_POLICY", None)
        os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)
        from holoprot._util.devices import passive_thread_waits
        assert "numpy" not in sys.modules
        assert passive_thread_waits() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "4"
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = "20"
        assert not passive_thread_waits() and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
        assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "20"
        del os.environ["OPENBLAS_THREAD_TIMEOUT"]
        import numpy  # too late for OpenBLAS: left alone
        assert not passive_thread_waits() and "OPENBLAS_THREAD_TIMEOUT" not in os.environ
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
