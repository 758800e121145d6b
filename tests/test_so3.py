from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from holoprot.model.cg import (
    CG_TABLE,
    CG_TABLE_LMAX,
    _minimum_spanning_edges,
    clebsch_gordan,
    solve_cg_table,
)
from holoprot.model.so3 import irreps_ls, parse_irreps, rotate_flat, wigner_d_blocks

ROTATION = Path(__file__).parent / "data" / "reference" / "zernike" / "rotation.npz"
SMALL_INPUTS = Path(__file__).parent / "data" / "reference" / "model_small" / "inputs.npz"
IRREPS = "44x0e+40x1e+40x2e+36x3e+36x4e+32x5e+32x6e"


def test_irreps_ls() -> None:
    ls = irreps_ls("2x0e+1x1e+1x2e")
    assert ls.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert irreps_ls(IRREPS).shape == (1708,)


def test_wigner_d_blocks_convention_and_orthogonality() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        R = q * torch.sign(torch.det(q))
        blocks = wigner_d_blocks(R, 6)
        assert torch.get_default_dtype() == torch.float32  # restored
        assert torch.allclose(blocks[1], R, atol=1e-13)
        for l, D in enumerate(blocks):
            assert D.dtype == torch.float64 and D.shape == (2 * l + 1, 2 * l + 1)
            assert torch.allclose(D @ D.T, torch.eye(2 * l + 1, dtype=torch.float64), atol=1e-13)


def test_wigner_d_matches_reference_float64() -> None:
    ref = np.load(ROTATION)
    blocks = wigner_d_blocks(torch.from_numpy(ref["R_f64"]), 6)
    for l, D in enumerate(blocks):
        np.testing.assert_allclose(D.numpy(), ref[f"D_l{l}_f64"], rtol=0, atol=1e-12)


def test_rotate_flat_matches_reference() -> None:
    """Reference ``rotate_signal`` (float32 e3nn-0.5 Wigner-D) on the model inputs."""
    inputs = np.load(SMALL_INPUTS)
    x = torch.from_numpy(inputs["x_normalised"][:2])
    ours = rotate_flat(x, IRREPS, torch.from_numpy(inputs["R"]))
    assert ours.dtype == torch.float32
    ref = inputs["x_normalised_rotated"]
    assert np.abs(ours.numpy() - ref).max() <= 1e-5 * np.abs(ref).max()


def test_parse_irreps_agrees_with_e3nn() -> None:
    from e3nn import o3

    for text in (IRREPS, "0e", "1x1o + 2x2y", "3x3y", "10x0e+1o", ""):
        expected = [(mul, ir.l, ir.p) for mul, ir in o3.Irreps(text)]
        assert parse_irreps(text) == expected
        assert parse_irreps(o3.Irreps(text)) == expected


def test_parse_irreps_rejects_malformed() -> None:
    for bad in ("x", "1x", "2x3", "1e+", "abc", "-1x0e", "1x0e+2x1q"):
        with pytest.raises(ValueError, match="not an irreps string"):
            parse_irreps(bad)


def test_shipped_cg_table_equals_a_fresh_e3nn_solve() -> None:
    with np.load(CG_TABLE, allow_pickle=False) as shipped:
        solved = solve_cg_table(CG_TABLE_LMAX)
        assert sorted(shipped.files) == sorted(solved)
        for name, cg in solved.items():
            np.testing.assert_array_equal(shipped[name], cg, err_msg=name)


def test_cg_beyond_the_table_comes_from_e3nn() -> None:
    from e3nn import o3

    cg = clebsch_gordan(CG_TABLE_LMAX + 1, 2, CG_TABLE_LMAX)
    expected = o3.wigner_3j(CG_TABLE_LMAX + 1, 2, CG_TABLE_LMAX, dtype=torch.float64)
    assert torch.equal(cg, expected)


def test_spanning_forest_equals_networkx() -> None:
    import networkx as nx

    rng = np.random.default_rng(0)
    for _ in range(200):
        lmax = int(rng.integers(1, 12))
        ls = sorted(set(rng.integers(0, lmax + 1, rng.integers(1, lmax + 2)).tolist()))
        for l3 in range(2 * lmax + 1):
            edges = [
                (a, b, (2 * a + 1) * (2 * b + 1))
                for a in ls
                for b in ls
                if a < b and abs(a - b) <= l3 <= a + b
            ]
            graph = nx.Graph()
            graph.add_nodes_from(range(max(ls) + 1))
            graph.add_weighted_edges_from(edges)
            expected = {frozenset(e) for e in nx.minimum_spanning_edges(graph, data=False)}
            ours = {frozenset(e) for e in _minimum_spanning_edges(max(ls) + 1, edges)}
            assert ours == expected, (ls, l3)
