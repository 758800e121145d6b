"""Start-up: `--help` and `holoprot zernike` never import torch; e3nn comes without dynamo;
numba kernels compile without a cache where none can be written; default worker counts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from holoprot.pipeline import default_workers
from holoprot.zernike import SH_TABLE_LMAX, _monomials_to_sh, solve_monomials_to_sh

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
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
    """`holoprot embed` of one file: no pandas (Arrow arrays built from buffers), no scipy.spatial
    (grid neighbour search), no e3nn/sympy (shipped CG table), no networkx (own Kruskal)."""
    out = tmp_path / "e.parquet"
    loaded = modules_after_command(
        ["holoprot", "embed", str(EXAMPLES / "1hvr.pdb"), "-o", str(out)]
    )
    assert out.exists() and loaded["torch"], loaded
    for name in ("pandas", "scipy.spatial", "e3nn", "sympy", "networkx", "torch._dynamo"):
        assert not loaded[name], (name, loaded)


def test_model_imports_e3nn_without_dynamo() -> None:
    loaded = modules_after(
        """
        from holoprot.so3 import wigner_d_blocks
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
        from holoprot.jit import cached_njit
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
    for shipped, solved in zip(
        _monomials_to_sh(SH_TABLE_LMAX), solve_monomials_to_sh(SH_TABLE_LMAX), strict=True
    ):
        np.testing.assert_allclose(shipped, solved, rtol=0, atol=1e-12)


def test_default_workers_never_oversubscribe() -> None:
    assert default_workers(100, cpus=2) == 0  # 2 cores: one process is faster
    assert default_workers(1, cpus=16) == 0
    for cpus in range(1, 65):
        for n in (2, 3, 10, 1000):
            workers = default_workers(n, cpus=cpus)
            assert workers <= n and workers + 1 <= max(cpus, 1) + (workers == 0)


def test_idle_threads_sleep_unless_the_user_chose() -> None:
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        os.environ.pop("OMP_WAIT_POLICY", None)
        from holoprot.devices import passive_thread_waits
        assert passive_thread_waits() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
        assert not passive_thread_waits() and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
