from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from holoprot.so3 import irreps_ls, rotate_flat, wigner_d_blocks

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
