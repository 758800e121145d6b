"""The encoder's fused pieces against their plain definitions: the tensor product's per-sample
squared norm (numba: summed in the kernel, with its own backward), the CG block (norm folded into
the linear layer, the skip added in place), and the matmul of the linear layers."""

from __future__ import annotations

import copy

import pytest
import torch

from holoprot.model.layers import (
    CGBlock,
    TensorProductNonlinearity,
    channel_mix,
    squared_norm,
)

LS = [0, 1, 2, 3, 4, 5, 6]


def feature(mul: int, batch: int, seed: int, grad: bool = False) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2 * l + 1, batch, mul, generator=gen, dtype=torch.float64, requires_grad=grad)
        for l in LS
    ]


def test_squared_norm_is_the_signal_norm_definition() -> None:
    x = dict(zip(LS, feature(5, 4, 0), strict=True))
    want = sum(x[l].pow(2).sum(dim=(0, 2)) / (2 * l + 1) for l in LS)
    assert (squared_norm(x) - want).abs().max() <= 1e-12 * want.max()


@pytest.mark.parametrize("rule", ["efficient", "full"])
def test_tensor_product_norm_and_its_gradient(rule: str) -> None:
    """``forward_with_norm`` gives the blocks' :func:`squared_norm` (numba: summed in the kernel
    in float64; 1e-12 relative to the definition), differentiable: gradcheck of blocks and norm
    together (float64), and the numba backward equals autograd through the torch backend for a
    loss that uses both (1e-12 relative)."""
    tp = TensorProductNonlinearity(3, LS, LS, rule).double()
    xs = feature(3, 4, 1, grad=True)

    def run(backend: str) -> tuple[torch.Tensor, ...]:
        blocks, sq = tp.forward_with_norm(dict(zip(LS, xs, strict=True)), backend)
        return (*blocks.values(), sq)

    for backend in ("numba", "torch"):
        *blocks, sq = run(backend)
        want = squared_norm(dict(zip(tp.nonzero_paths, blocks, strict=True)))
        assert (sq - want).abs().max() <= 1e-12 * want.max()
    assert torch.autograd.gradcheck(lambda *_: run("numba"), xs)
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in run("torch")]
    grads = {}
    for backend in ("numba", "torch"):
        loss = sum((w * o).sum() for w, o in zip(weights, run(backend), strict=True))
        grads[backend] = torch.autograd.grad(loss, xs)
    for a, b in zip(grads["numba"], grads["torch"], strict=True):
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()
    # the norm alone (no gradient reaches the blocks): its backward path on its own
    loss = run("numba")[-1].sum()
    (grad,) = torch.autograd.grad(loss, xs[2])
    (want,) = torch.autograd.grad(run("torch")[-1].sum(), xs[2])
    assert (grad - want).abs().max() <= 1e-12 * want.abs().max()


@pytest.mark.parametrize(("ch_in", "ch_out"), [(3, 5), (5, 3)])
def test_cg_block_equals_its_layers_composed(ch_in: int, ch_out: int) -> None:
    """The block's fused forward (zero paths skipped, norm folded into the weights, skip added in
    place to the common channels) equals BatchNorm → full tensor product → SignalNorm →
    SO3Linear → zero-padded or truncated skip, in float64 (1e-12), in training and eval mode,
    and gradients flow to every input degree."""
    torch.manual_seed(3)
    block = CGBlock(dict.fromkeys(LS, ch_in), ch_out, 4, "efficient").double()
    with torch.no_grad():
        for p in block.parameters():
            p.uniform_(0.5, 1.5)
    xs = feature(ch_in, 6, 4, grad=True)
    h = dict(zip(LS, xs, strict=True))
    for train in (True, False):
        reference = copy.deepcopy(block).train(train)  # its own copy of the running statistics
        got = block.train(train)(h)
        t = reference.tp(reference.batch_norm(h), "torch")
        want = reference.linear(reference.signal_norm(t))
        for l in want:
            skip = torch.nn.functional.pad(h[l], (0, max(0, ch_out - ch_in)))[..., :ch_out]
            want[l] = want[l] + skip
        assert set(got) == set(want)
        for l in want:
            assert (got[l] - want[l]).abs().max() <= 1e-12 * want[l].abs().max()
    sum(y.sum() for y in block.train()(h).values()).backward()
    assert all(x.grad is not None and x.grad.abs().max() > 0 for x in xs)


def test_channel_mix_is_the_matmul_with_or_without_autograd() -> None:
    """Training and inference get the same float32 matmul, bit for bit (no inference-only op
    whose other summation order would make latents depend on autograd); float64 likewise."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 50, 300, generator=gen)
    w = torch.randn(300, 44, generator=gen, requires_grad=True)
    want = x @ w
    assert torch.equal(channel_mix(x, w), want)
    with torch.no_grad():
        assert torch.equal(channel_mix(x, w), want)
    x64, w64 = x.double(), w.detach().double()
    assert torch.equal(channel_mix(x64, w64), x64 @ w64)
