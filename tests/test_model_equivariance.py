"""Rotating the input: z invariant, frame → frame·Rᵀ, recon → recon·blockdiag(D)ᵀ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from holoprot.model._tp_cpu import PARALLEL_MIN_ELEMENTS, threads_for
from holoprot.model.cg import clebsch_gordan
from holoprot.model.hvae import HVAE, HVAEConfig, gram_schmidt_frame
from holoprot.model.layers import TensorProductNonlinearity
from holoprot.model.reference import load_reference_state
from holoprot.model.so3 import rotate_flat

SMALL = Path(__file__).parent / "data" / "reference" / "model_small"


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q * torch.sign(torch.det(q))


def trained_vae() -> HVAE:
    """The reference 'vae' fixture: non-trivial batch-norm statistics and trained weights."""
    hp = json.loads((SMALL / "vae" / "hparams.json").read_text())["constructor"]["hparams"]
    config = HVAEConfig(
        latent_dim=hp["latent_dim"],
        ch_initial=hp["ch_initial_linear_projection"],
        ch_sizes=tuple(hp["ch_size_list"]),
        lmax_list=tuple(hp["lmax_list"]),
        is_vae=True,
        input_norm_const=0.329,
    )
    model = HVAE(config)
    with np.load(SMALL / "vae" / "state_dict.npz") as state:
        load_reference_state(model, dict(state))
    return model.eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_equivariance(dtype: torch.dtype, tol: float) -> None:
    model = trained_vae().to(dtype)
    irreps = model.config.irreps_in
    x = torch.from_numpy(np.load(SMALL / "inputs.npz")["x_normalised"]).to(dtype) * 0.329
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        base = model(x)
        for _ in range(3):
            R = random_rotation(gen)
            rot = model(rotate_flat(x, irreps, R))
            Rt = R.to(dtype).T
            assert rel(rot.z_mean, base.z_mean) <= tol
            assert rel(rot.z_log_var, base.z_log_var) <= tol
            assert rel(rot.frame, base.frame @ Rt) <= tol
            assert rel(rot.recon, rotate_flat(base.recon, irreps, R)) <= tol
            # the frame is a proper rotation (rows orthonormal, det +1)
            eye = torch.eye(3, dtype=dtype).expand_as(rot.frame)
            assert rel(rot.frame @ rot.frame.transpose(1, 2), eye) <= tol
            assert torch.allclose(
                torch.det(rot.frame), torch.ones(len(x), dtype=dtype), atol=tol * 10
            )


def test_random_init_equivariance_full_rule() -> None:
    torch.manual_seed(3)
    config = HVAEConfig(
        irreps_in="4x0e+3x1e+2x2e+2x3e",
        latent_dim=4,
        ch_initial=3,
        ch_sizes=(3, 4),
        lmax_list=(2, 1),
        ls_rule="full",
    )
    model = HVAE(config).double().eval()
    x = torch.randn(5, config.dim, dtype=torch.float64)
    R = random_rotation(torch.Generator().manual_seed(7))
    with torch.no_grad():
        base, rot = model(x), model(rotate_flat(x, config.irreps_in, R))
    assert rel(rot.z_mean, base.z_mean) <= 1e-10
    assert rel(rot.recon, rotate_flat(base.recon, config.irreps_in, R)) <= 1e-10


def test_gram_schmidt_degenerate_inputs_are_finite() -> None:
    v = torch.tensor(
        [
            [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]],  # regular
            [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]],  # zero first vector
            [[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]],  # collinear
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # both zero
        ],
        requires_grad=True,
    )
    frame = gram_schmidt_frame(v)
    assert torch.isfinite(frame).all()
    assert torch.allclose(frame[0], torch.eye(3))
    assert torch.equal(frame[3], torch.zeros(3, 3))
    frame.sum().backward()
    assert torch.isfinite(v.grad).all()


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("rule", ["efficient", "full"])
def test_tensor_product_matches_dense_definition(rule: str, backend: str) -> None:
    """Every path, the skipped odd-l3 self paths included, equals Σ C^{l1 l2 l3} x^{l1} x^{l2}
    (float64, 1e-12); the skipped ones are exactly zero. Both backends."""
    gen = torch.Generator().manual_seed(3)
    mul, ls = 5, range(5)
    tp = TensorProductNonlinearity(mul, list(ls), list(range(5)), rule).double()
    x = {l: torch.randn(2 * l + 1, 7, mul, generator=gen, dtype=torch.float64) for l in ls}
    out = tp(x, backend)
    for l3, pairs in tp.paths.items():
        assert out[l3].shape == (2 * l3 + 1, 7, len(pairs) * mul)
        for p, (l1, l2) in enumerate(pairs):
            dense = torch.einsum("mnM,mbc,nbc->Mbc", clebsch_gordan(l1, l2, l3), x[l1], x[l2])
            got = out[l3][..., p * mul : (p + 1) * mul]
            assert (got - dense).abs().max() <= 1e-12 * max(1.0, float(dense.abs().max()))
            if l1 == l2 and l3 % 2:
                assert torch.count_nonzero(got) == 0


@pytest.mark.parametrize("rule", ["efficient", "full"])
def test_tensor_product_numba_gradients(rule: str) -> None:
    """The numba backend's own backward pass when only the blocks get a gradient (the norm's
    none): equal to autograd through the torch backend (1e-12 relative); finite differences of
    the blocks and the norm together: test_model_layers.py. Its float32 forward is within 1e-6
    of each block's largest value (measured 1.6e-7: each entry sums a few dozen float32
    products)."""
    gen = torch.Generator().manual_seed(5)
    mul, ls = 3, [0, 1, 2, 3, 4, 5, 6]
    tp = TensorProductNonlinearity(mul, ls, [0, 1, 2, 3, 4, 5, 6], rule).double()
    xs = [
        torch.randn(2 * l + 1, 4, mul, generator=gen, dtype=torch.float64, requires_grad=True)
        for l in ls
    ]

    def run(backend: str) -> tuple[torch.Tensor, ...]:
        return tuple(tp.forward_nonzero(dict(zip(ls, xs, strict=True)), backend).values())

    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in run("torch")]
    grads = {}
    for backend in ("numba", "torch"):
        loss = sum((w * o).sum() for w, o in zip(weights, run(backend), strict=True))
        grads[backend] = torch.autograd.grad(loss, xs)
    for a, b in zip(grads["numba"], grads["torch"], strict=True):
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()
    x64 = {l: x.detach() for l, x in zip(ls, xs, strict=True)}
    want = tp.forward_nonzero(x64, "torch")
    got = tp.float().forward_nonzero({l: x.float() for l, x in x64.items()}, "numba")
    for l3 in want:
        assert got[l3].dtype == torch.float32
        assert (got[l3].double() - want[l3]).abs().max() <= 1e-6 * want[l3].abs().max()


def test_tensor_product_rejects_unknown_backend() -> None:
    tp = TensorProductNonlinearity(2, [0, 1], [0, 1], "efficient")
    with pytest.raises(ValueError, match="backend"):
        tp.forward_nonzero({0: torch.zeros(1, 1, 2), 1: torch.zeros(3, 1, 2)}, "cuda")


def test_tensor_product_auto_backend_falls_back_to_torch_for_other_dtypes() -> None:
    """bfloat16 on CPU: 'auto' takes the torch path (equal to it exactly); 'numba' refuses."""
    tp = TensorProductNonlinearity(2, [0, 1, 2], [0, 1, 2], "efficient").to(torch.bfloat16)
    gen = torch.Generator().manual_seed(1)
    x = {l: torch.randn(2 * l + 1, 3, 2, generator=gen).bfloat16() for l in range(3)}
    auto, dense = tp(x), tp(x, "torch")
    assert all(torch.equal(auto[l], dense[l]) for l in dense)
    with pytest.raises(TypeError, match="float32 or float64"):
        tp(x, "numba")


def test_tensor_product_numba_is_independent_of_thread_count() -> None:
    """Samples are independent parallel iterations: 1 and 2 threads give bitwise-equal outputs
    and gradients (a race between samples would not). The input is above
    PARALLEL_MIN_ELEMENTS, so the 2-thread run is parallel."""
    tp = TensorProductNonlinearity(8, list(range(7)), list(range(7)), "efficient")
    gen = torch.Generator().manual_seed(2)
    x = [torch.randn(2 * l + 1, 256, 8, generator=gen, requires_grad=True) for l in range(7)]
    assert torch.cat(x).numel() >= PARALLEL_MIN_ELEMENTS
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = tp.forward_nonzero(dict(enumerate(x)), "numba")
            loss = sum((o * o.detach().sin()).sum() for o in out.values())
            results.append((out, torch.autograd.grad(loss, x)))
    finally:
        torch.set_num_threads(threads)
    (out1, grad1), (out2, grad2) = results
    assert all(torch.equal(out1[l], out2[l]) for l in out1)
    assert all(torch.equal(a, b) for a, b in zip(grad1, grad2, strict=True))


def test_small_tensor_products_run_on_one_thread() -> None:
    assert threads_for(PARALLEL_MIN_ELEMENTS - 1, 4) == 1
    assert threads_for(PARALLEL_MIN_ELEMENTS, 4) == 4
