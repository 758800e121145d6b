"""Equivariant layers of the H-(V)AE, acting on dicts of spherical tensors.

A feature is a dict ``{l: Tensor(2l+1, B, mul_l)}`` (all parity e) — *m-major* layout: channel
mixing is then a plain ``(2l+1)·B × mul`` matmul and the channel-elementwise tensor product a
matmul over ``m`` with ``B·mul`` columns, with no transposes. ``irreps`` below is the dict
``{l: mul_l}``. Rotating the input by ``R`` maps ``x^l_{m,b,c} → Σ_n D^l(R)_{mn} x^l_{n,b,c}``;
every layer here commutes with that action (scalars, ``l = 0``, are invariant).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from holoprot._util.devices import set_numba_threads, use_numba
from holoprot.model.cg import (
    clebsch_gordan,
    nonzero_channels,
    nonzero_path_indices,
    nonzero_paths,
    tp_paths,
)

if TYPE_CHECKING:
    from holoprot.model._tp_cpu import SparseTerms

__all__ = [
    "BatchNorm",
    "CGBlock",
    "Irreps",
    "SignalNorm",
    "SO3Linear",
    "TensorProductNonlinearity",
    "channel_mix",
    "squared_norm",
]

Irreps = Mapping[int, int]
Feature = dict[int, Tensor]
#: Where parameters are created: None (torch's default), a device or its name ("meta": shapes only).
Device = str | torch.device | None


def channel_mix(x: Tensor, weight: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``x @ weight``: ``(…, K) @ (K, N) → (…, N)``, in ``x``'s dtype.

    ``dtype`` (e.g. ``torch.bfloat16``; None: ``x``'s): both operands are rounded to it for the
    product, which comes back in that dtype (torch accumulates bf16 products in fp32) and is cast
    to ``x``'s dtype.

    A plain matmul also for float32 inference: oneDNN's linear op (``_linear_pointwise``) was 8 %
    faster on one fixed batch shape, but builds and keeps a primitive per shape, and `holoprot
    embed` meets many (partial batches): on 60 BM5 files it was 8 % slower and peaked 400 MB
    higher (benchmarks/RESULTS.md).
    """
    if dtype is not None and dtype != x.dtype:
        return (x.to(dtype) @ weight.to(dtype)).to(x.dtype)
    return x @ weight


class SO3Linear(nn.Module):
    """Per-degree channel mixing ``y^l_{m,b,j} = Σ_i x^l_{m,b,i} W^l_{ij}`` (no bias).

    ``weights[str(l)]`` has shape ``(mul_in_l, mul_out_l)`` (Xavier-uniform init); only degrees
    present in both ``irreps_in`` and ``irreps_out`` are kept. Equivariant: acts on channels only.
    ``device``: where the parameters are created (``"meta"``: shapes only, no memory).
    """

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps, device: Device = None) -> None:
        super().__init__()
        self.ls = [l for l in sorted(irreps_out) if l in irreps_in]
        self.weights = nn.ParameterDict()
        for l in self.ls:
            w = torch.empty(irreps_in[l], irreps_out[l], device=device)
            nn.init.xavier_uniform_(w)
            self.weights[str(l)] = nn.Parameter(w)

    def forward(self, x: Mapping[int, Tensor], dtype: torch.dtype | None = None) -> Feature:
        """``dtype``: of the products (:func:`channel_mix`)."""
        return {l: channel_mix(x[l], self.weights[str(l)], dtype) for l in self.ls}


class BatchNorm(nn.Module):
    """Equivariant batch norm ('component' normalisation, affine; e3nn ``BatchNorm`` semantics).

    ``l = 0``: subtract the per-channel batch mean (``running_mean`` in eval). Every ``l``: divide
    by ``sqrt(batch-mean of mean_m x² + eps)`` per channel (``running_var`` in eval; the biased
    statistic, after centring ``l = 0``), multiply by ``weight``; ``l = 0`` adds ``bias``.
    ``weight``/``running_var`` hold one entry per (l, channel), l ascending; ``bias``/
    ``running_mean`` one per scalar channel. Running averages use ``momentum``.
    """

    def __init__(
        self, irreps: Irreps, eps: float = 1e-5, momentum: float = 0.1, device: Device = None
    ) -> None:
        super().__init__()
        self.irreps = dict(sorted(irreps.items()))
        self.eps = eps
        self.momentum = momentum
        total = sum(self.irreps.values())
        n0 = self.irreps.get(0, 0)
        self.weight = nn.Parameter(torch.ones(total, device=device))
        self.bias = nn.Parameter(torch.zeros(n0, device=device))
        self.register_buffer("running_mean", torch.zeros(n0, device=device))
        self.register_buffer("running_var", torch.ones(total, device=device))

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        out: Feature = {}
        new_var = []
        start = 0
        for l, mul in self.irreps.items():
            field = x[l]
            if l == 0:
                if self.training:
                    mean = field.mean(dim=(0, 1))
                    with torch.no_grad():
                        self.running_mean.lerp_(mean.detach(), self.momentum)
                else:
                    mean = self.running_mean
                field = field - mean
            if self.training:
                var = field.pow(2).mean(dim=(0, 1))
                new_var.append(var.detach())
            else:
                var = self.running_var[start : start + mul]
            field = field * ((var + self.eps).rsqrt() * self.weight[start : start + mul])
            if l == 0:
                field = field + self.bias
            out[l] = field
            start += mul
        if self.training:
            with torch.no_grad():
                self.running_var.lerp_(torch.cat(new_var), self.momentum)
        return out


def squared_norm(x: Mapping[int, Tensor]) -> Tensor:
    """Per-sample ``Σ_l Σ_c mean_m (x^l_{m,b,c})²`` of a feature ``{l: (2l+1, B, C_l)}``, shape
    ``(B,)``; ``x`` needs at least one degree.

    Each degree is reduced over its contiguous channel axis first (``vector_norm``: no squared
    copy of the feature is made), then over ``m``: 3× faster on CPU than ``pow(2).sum((0, 2))``
    (13 × 512 × 600 float32: 1.4 ms against 4.0 ms, one thread).
    """
    terms = [
        torch.linalg.vector_norm(field, dim=-1).square().sum(0) / (2 * l + 1)
        for l, field in x.items()
    ]
    return sum(terms[1:], terms[0])


class SignalNorm(nn.Module):
    """Per-sample signal norm ('component', affine 'per_l', not balanced).

    ``N_b = sqrt(Σ_l Σ_c mean_m (x^l_{b,c,m})² + eps)``; ``y^l = x^l / N_b · w_l``; ``y^0`` also
    gets a single shared ``bias``. ``N_b`` is invariant, so the layer is equivariant.
    """

    def __init__(self, ls: Sequence[int], eps: float = 1e-8, device: Device = None) -> None:
        super().__init__()
        self.ls = sorted(ls)
        self.eps = eps
        self.weights = nn.ParameterDict(
            {str(l): nn.Parameter(torch.ones(1, device=device)) for l in self.ls}
        )
        self.bias = nn.Parameter(torch.zeros(1, device=device))

    def inverse_norm(self, x: Mapping[int, Tensor]) -> Tensor:
        """``1 / N_b`` as a ``(B, 1)`` tensor (degrees absent from ``x`` count as zero)."""
        return self.inverse_from_squares(squared_norm({l: x[l] for l in self.ls if l in x}))

    def inverse_from_squares(self, sq: Tensor) -> Tensor:
        """``1 / N_b`` as a ``(B, 1)`` tensor from ``sq (B,)`` = :func:`squared_norm` of the
        input."""
        return (sq + self.eps).rsqrt()[:, None]

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        inv = self.inverse_norm(x)
        out = {l: x[l] * inv * self.weights[str(l)] for l in self.ls}
        if 0 in out:
            out[0] = out[0] + self.bias
        return out


class TensorProductNonlinearity(nn.Module):
    """Elementwise CG tensor product of a feature with itself (no parameters).

    ``out^{l3}_{M, b, p·C+c} = Σ_{m,n} C^{l1 l2 l3}_{m n M} x^{l1}_{m,b,c} x^{l2}_{n,b,c}`` for the
    ``p``-th path ``(l1, l2)`` of ``l3`` in :func:`~holoprot.model.cg.tp_paths` order; ``C`` is
    the input multiplicity (equal for every ``l``). Equivariant because C is an intertwiner.

    Implementation: a self path ``(l, l) → l3`` sees the symmetric product ``x_m x_n`` and
    ``C^{l l l3}`` is antisymmetric in ``(m, n)`` for odd ``l3`` (exchange symmetry
    ``(−1)^{2l+l3}``), so odd-``l3`` self paths are identically zero and are not computed. The
    other paths sharing ``(l1, l2)`` are contracted together: the concatenated CG tensors of
    their ``l3``, ``(Σ(2l3+1), (2l1+1)(2l2+1))``, times the outer product ``x^{l1} ⊗ x^{l2}``
    viewed as ``((2l1+1)(2l2+1), B·C)``, one matmul per pair; each ``l3`` output is then one
    ``stack`` of row slices. That is the ``'torch'`` backend (any device); on CPU the default is
    the ``'numba'`` backend (:mod:`holoprot.model._tp_cpu`): the same sums over the nonzero CG
    entries only, per sample, with its own backward pass; it also sums each sample's squared
    norm of the output as it writes it (:meth:`forward_with_norm`, for the following signal
    norm).

    :meth:`forward` returns the full layout (zero blocks included). :meth:`forward_nonzero`
    returns only the nonzero path blocks; :meth:`nonzero_channels` gives their channel indices
    in the full layout, so a following linear layer can use just those rows of its weight.
    CG tensors are float64 masters re-cast to the module's dtype/device, so ``.double()`` gets
    exact float64 coefficients.
    """

    def __init__(self, mul: int, ls_in: Sequence[int], ls_out: Sequence[int], rule: str) -> None:
        super().__init__()
        self.mul = mul
        self.ls_in = sorted(ls_in)
        self.paths = tp_paths(self.ls_in, ls_out, rule)
        self.irreps_out = {l3: len(p) * mul for l3, p in self.paths.items()}
        kept = nonzero_path_indices(self.paths)
        groups: dict[tuple[int, int], list[int]] = {}
        for l3, indices in kept.items():
            for i in indices:
                groups.setdefault(self.paths[l3][i], []).append(l3)
        self.nonzero_paths = nonzero_paths(self.paths)
        # ((l1, l2), l3s, buffer name) per group
        self.groups: list[tuple[tuple[int, int], tuple[int, ...], str]] = []
        self._masters: dict[str, Tensor] = {}
        for (l1, l2), l3s in groups.items():
            d1, d2 = 2 * l1 + 1, 2 * l2 + 1
            mat = torch.cat([clebsch_gordan(l1, l2, l3).reshape(d1 * d2, -1) for l3 in l3s], 1)
            name = f"cg_{l1}_{l2}"
            self._masters[name] = mat.T.contiguous()
            self.register_buffer(name, mat.T.to(torch.get_default_dtype()), persistent=False)
            self.groups.append(((l1, l2), tuple(l3s), name))
        for l3, indices in kept.items():
            channels = torch.from_numpy(nonzero_channels(indices, mul))
            self.register_buffer(f"nonzero_channels_{l3}", channels, persistent=False)

    @functools.cached_property
    def _terms(self) -> SparseTerms:
        """Term tables of the numba backend, built on its first use (not needed on GPUs)."""
        from holoprot.model._tp_cpu import SparseTerms

        return SparseTerms.build(self.ls_in, self.nonzero_paths)

    def nonzero_channels(self, l3: int) -> Tensor:
        """Channel indices (in the full ``l3`` layout) of the blocks :meth:`forward_nonzero`
        returns, ascending; int64."""
        return getattr(self, f"nonzero_channels_{l3}")

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> nn.Module:
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            current = getattr(self, name)
            setattr(self, name, master.to(device=current.device, dtype=current.dtype))
        return self

    @property
    def path_count(self) -> int:
        return sum(len(p) for p in self.paths.values())

    def forward_nonzero(self, x: Mapping[int, Tensor], backend: str = "auto") -> Feature:
        """The nonzero path blocks: ``{l3: (2l3+1, B, len(nonzero_paths[l3])·C)}`` (``l3`` without
        any nonzero path left out). `backend`: 'numba' (CPU, float32/float64), 'torch', or
        'auto' (numba where it applies, torch elsewhere)."""
        return self.forward_with_norm(x, backend)[0]

    def forward_with_norm(
        self, x: Mapping[int, Tensor], backend: str = "auto"
    ) -> tuple[Feature, Tensor]:
        """:meth:`forward_nonzero` and the :func:`squared_norm` ``(B,)`` of its blocks (what a
        following :class:`SignalNorm` needs; differentiable). The numba backend sums it, in
        float64, while it writes the blocks."""
        like = x[self.ls_in[0]]
        numba_applies = like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64)
        if use_numba(backend, numba_applies):
            x_cat = torch.cat([x[l] for l in self.ls_in])
            *blocks, sq = _SparseTensorProduct.apply(x_cat, self._terms)
            return dict(zip(self.nonzero_paths, blocks, strict=True)), sq
        blocks = self._forward_torch(x)
        return blocks, squared_norm(blocks)

    def _forward_torch(self, x: Mapping[int, Tensor]) -> Feature:
        _, batch, chans = x[self.ls_in[0]].shape
        flat = {l: x[l].reshape(2 * l + 1, batch * chans) for l in self.ls_in}
        pieces: dict[tuple[int, int, int], Tensor] = {}
        for (l1, l2), l3s, name in self.groups:
            outer = (flat[l1][:, None, :] * flat[l2][None, :, :]).view(-1, batch * chans)
            y = (getattr(self, name) @ outer).view(-1, batch, chans)
            for l3, block in zip(l3s, y.split([2 * l3 + 1 for l3 in l3s]), strict=True):
                pieces[(l1, l2, l3)] = block
        return {
            l3: torch.stack([pieces[(l1, l2, l3)] for l1, l2 in pairs], dim=2).view(
                2 * l3 + 1, batch, len(pairs) * chans
            )
            for l3, pairs in self.nonzero_paths.items()
        }

    def forward(self, x: Mapping[int, Tensor], backend: str = "auto") -> Feature:
        compact = self.forward_nonzero(x, backend)
        like = x[self.ls_in[0]]
        out: Feature = {}
        for l3, mul_out in self.irreps_out.items():
            full = like.new_zeros(2 * l3 + 1, like.shape[1], mul_out)
            if l3 in compact:
                full[..., self.nonzero_channels(l3)] = compact[l3]
            out[l3] = full
        return out


class _SparseTensorProduct(torch.autograd.Function):
    """``x (R, B, C) → (*blocks, sq)``: the numba tensor product
    (:mod:`holoprot.model._tp_cpu`), one ``(2l3+1, B, P·C)`` block per degree, and their
    :func:`squared_norm` ``(B,)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, terms: SparseTerms
    ) -> tuple[Tensor, ...]:
        from holoprot.model._tp_cpu import tensor_product

        if x.device.type != "cpu":
            raise ValueError(f"the numba tensor product runs on CPU tensors, got {x.device}")
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"the numba tensor product needs float32 or float64, got {x.dtype}")
        arrays, sq = tensor_product(x.detach().numpy(), terms, torch.get_num_threads())
        blocks = [torch.from_numpy(a) for a in arrays]
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, *blocks)
        ctx.terms = terms
        return (*blocks, torch.from_numpy(sq).to(x.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, None]:  # type: ignore[override]
        from holoprot.model._tp_cpu import threads_for, tp_backward

        x, *blocks = ctx.saved_tensors
        *grad_blocks, grad_sq = grads
        if grad_sq is None and all(g is None for g in grad_blocks):
            return None, None
        terms = ctx.terms
        rows, batch, chans = x.shape
        grad_x = torch.zeros_like(x)
        set_numba_threads(threads_for(x.numel(), torch.get_num_threads()))
        x_np = x.detach().reshape(rows, batch * chans).numpy()
        tables = terms.tables(x_np.dtype)
        for l3, out, grad in zip(terms.degrees, blocks, grad_blocks, strict=True):
            # ∂sq_b/∂out = 2·out/(2l3+1): the kernel adds norm_grad_b·out to ∂L/∂out
            if grad_sq is None:
                norm_grad = x.new_empty(0)
            else:
                norm_grad = grad_sq.to(x.dtype) * (2 / (2 * int(l3) + 1))
            if grad is None:
                if grad_sq is None:
                    continue
                grad = out.new_zeros(out.shape)
            tp_backward(
                x_np, chans, grad.contiguous().numpy(), out.detach().numpy(), norm_grad.numpy(),
                *tables, terms.first_group[int(l3)], grad_x.view(rows, batch * chans).numpy(),
            )  # fmt: skip
        return grad_x, None


class CGBlock(nn.Module):
    """``h → BatchNorm → TP nonlinearity → SignalNorm → SO3Linear (+ additive skip)``.

    Output irreps ``{l: ch_out for l in 0..lmax_out}``. The skip adds ``h^l`` for every ``l`` in
    both input and output, zero-padded (fewer input channels) or truncated to the first
    ``ch_out`` channels (more input channels). The signal norm is folded into the linear layer:
    ``Linear(t/N_b·w_l + β δ_l0) = Linear_{W·w_l}(t)/N_b + β·Σ_i W^0_{i·}``, and the tensor
    product's identically-zero path blocks are skipped (only their weight rows are dropped).
    """

    def __init__(
        self, irreps_in: Irreps, ch_out: int, lmax_out: int, rule: str, device: Device = None
    ) -> None:
        super().__init__()
        muls = set(irreps_in.values())
        if len(muls) != 1:
            raise ValueError(
                f"elementwise tensor product needs equal multiplicities, got {irreps_in}"
            )
        self.irreps_in = dict(sorted(irreps_in.items()))
        self.irreps_out = {l: ch_out for l in range(lmax_out + 1)}
        self.batch_norm = BatchNorm(self.irreps_in, device=device)
        self.tp = TensorProductNonlinearity(
            muls.pop(), list(self.irreps_in), list(self.irreps_out), rule
        )
        missing = set(self.irreps_out) - set(self.tp.irreps_out)
        if missing:
            raise ValueError(f"degrees {sorted(missing)} cannot be reached from {irreps_in}")
        self.signal_norm = SignalNorm(list(self.tp.irreps_out), device=device)
        self.linear = SO3Linear(self.tp.irreps_out, self.irreps_out, device=device)

    def forward(self, h: Mapping[int, Tensor], dtype: torch.dtype | None = None) -> Feature:
        """``dtype``: of the linear layer's products (:func:`channel_mix`; None: the input's)."""
        t, sq = self.tp.forward_with_norm(self.batch_norm(h))
        inv = self.signal_norm.inverse_from_squares(sq)
        out: Feature = {}
        for l in self.linear.ls:
            w = self.linear.weights[str(l)]
            if l in t:
                rows = w.index_select(0, self.tp.nonzero_channels(l))
                y = channel_mix(t[l], rows * self.signal_norm.weights[str(l)], dtype) * inv
            else:
                y = w.new_zeros(2 * l + 1, len(inv), w.shape[1])
            if l == 0:
                y += self.signal_norm.bias * w.sum(0)
            if l in h:  # the skip, zero-padded or truncated: added to the common channels
                common = min(h[l].shape[-1], y.shape[-1])
                y[..., :common] += h[l][..., :common]
            out[l] = y
        return out
