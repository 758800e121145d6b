"""Equivariant layers of the H-(V)AE, acting on dicts of spherical tensors.

A feature is a dict ``{l: Tensor(B, mul_l, 2l+1)}`` (all parity e); ``irreps`` below is the dict
``{l: mul_l}``. Rotating the input by ``R`` multiplies every ``x^l`` on the right by ``D^l(R)ᵀ``;
every layer here commutes with that action (scalars, ``l = 0``, are invariant).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from holoprot.model.cg import clebsch_gordan, tp_paths

__all__ = [
    "BatchNorm",
    "CGBlock",
    "Irreps",
    "SignalNorm",
    "SO3Linear",
    "TensorProductNonlinearity",
]

Irreps = Mapping[int, int]
Feature = dict[int, Tensor]


class SO3Linear(nn.Module):
    """Per-degree channel mixing ``y^l_{b,j,m} = Σ_i W^l_{ij} x^l_{b,i,m}`` (no bias).

    ``weights[str(l)]`` has shape ``(mul_in_l, mul_out_l)`` (Xavier-uniform init); only degrees
    present in both ``irreps_in`` and ``irreps_out`` are kept. Equivariant: acts on channels only.
    """

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps) -> None:
        super().__init__()
        self.ls = [l for l in sorted(irreps_out) if l in irreps_in]
        self.weights = nn.ParameterDict()
        for l in self.ls:
            w = torch.empty(irreps_in[l], irreps_out[l])
            nn.init.xavier_uniform_(w)
            self.weights[str(l)] = nn.Parameter(w)

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        return {l: torch.einsum("bim,ij->bjm", x[l], self.weights[str(l)]) for l in self.ls}


class BatchNorm(nn.Module):
    """Equivariant batch norm ('component' normalisation, affine; e3nn ``BatchNorm`` semantics).

    ``l = 0``: subtract the per-channel batch mean (``running_mean`` in eval). Every ``l``: divide
    by ``sqrt(batch-mean of mean_m x² + eps)`` per channel (``running_var`` in eval; the biased
    statistic, after centring ``l = 0``), multiply by ``weight``; ``l = 0`` adds ``bias``.
    ``weight``/``running_var`` hold one entry per (l, channel), l ascending; ``bias``/
    ``running_mean`` one per scalar channel. Running averages use ``momentum``.
    """

    def __init__(self, irreps: Irreps, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.irreps = dict(sorted(irreps.items()))
        self.eps = eps
        self.momentum = momentum
        total = sum(self.irreps.values())
        n0 = self.irreps.get(0, 0)
        self.weight = nn.Parameter(torch.ones(total))
        self.bias = nn.Parameter(torch.zeros(n0))
        self.register_buffer("running_mean", torch.zeros(n0))
        self.register_buffer("running_var", torch.ones(total))

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        out: Feature = {}
        new_var = []
        start = 0
        for l, mul in self.irreps.items():
            field = x[l]
            if l == 0:
                if self.training:
                    mean = field.mean(dim=(0, 2))
                    with torch.no_grad():
                        self.running_mean.lerp_(mean.detach(), self.momentum)
                else:
                    mean = self.running_mean
                field = field - mean[None, :, None]
            if self.training:
                var = field.pow(2).mean(dim=2).mean(dim=0)
                new_var.append(var.detach())
            else:
                var = self.running_var[start : start + mul]
            scale = (var + self.eps).pow(-0.5) * self.weight[start : start + mul]
            field = field * scale[None, :, None]
            if l == 0:
                field = field + self.bias[None, :, None]
            out[l] = field
            start += mul
        if self.training:
            with torch.no_grad():
                self.running_var.lerp_(torch.cat(new_var), self.momentum)
        return out


class SignalNorm(nn.Module):
    """Per-sample signal norm ('component', affine 'per_l', not balanced).

    ``N_b = sqrt(Σ_l Σ_c mean_m (x^l_{b,c,m})² + eps)``; ``y^l = x^l / N_b · w_l``; ``y^0`` also
    gets a single shared ``bias``. ``N_b`` is invariant, so the layer is equivariant.
    """

    def __init__(self, ls: Sequence[int], eps: float = 1e-8) -> None:
        super().__init__()
        self.ls = sorted(ls)
        self.eps = eps
        self.weights = nn.ParameterDict({str(l): nn.Parameter(torch.ones(1)) for l in self.ls})
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        sq = sum(x[l].pow(2).mean(dim=2).sum(dim=1) for l in self.ls)
        inv = (sq + self.eps).rsqrt()[:, None, None]
        out = {l: x[l] * inv * self.weights[str(l)] for l in self.ls}
        if 0 in out:
            out[0] = out[0] + self.bias
        return out


class TensorProductNonlinearity(nn.Module):
    """Elementwise CG tensor product of a feature with itself (no parameters).

    ``out^{l3}_{b, p·C+c, M} = Σ_{m,n} C^{l1 l2 l3}_{m n M} x^{l1}_{b,c,m} x^{l2}_{b,c,n}`` for
    the ``p``-th path ``(l1, l2)`` of ``l3`` in :func:`~holoprot.model.cg.tp_paths` order; ``C`` is
    the input multiplicity (equal for every ``l``). Equivariant because C is an intertwiner.

    Implementation: paths sharing ``(l1, l2)`` are contracted together — the outer product
    ``x^{l1} ⊗ x^{l2}`` of shape ``(B·C, (2l1+1)(2l2+1))`` meets the concatenated CG tensors of all
    its ``l3`` in one matmul. CG tensors are float64 masters re-cast to the module's dtype/device,
    so ``.double()`` gets exact float64 coefficients rather than widened float32 ones.
    """

    def __init__(self, mul: int, ls_in: Sequence[int], ls_out: Sequence[int], rule: str) -> None:
        super().__init__()
        self.mul = mul
        self.paths = tp_paths(ls_in, ls_out, rule)
        self.irreps_out = {l3: len(p) * mul for l3, p in self.paths.items()}
        groups: dict[tuple[int, int], list[int]] = {}
        for l3, pairs in self.paths.items():
            for pair in pairs:
                groups.setdefault(pair, []).append(l3)
        self.groups = [(l1, l2, tuple(l3s)) for (l1, l2), l3s in groups.items()]
        self._masters: dict[str, Tensor] = {}
        for l1, l2, l3s in self.groups:
            d1, d2 = 2 * l1 + 1, 2 * l2 + 1
            mat = torch.cat([clebsch_gordan(l1, l2, l3).reshape(d1 * d2, -1) for l3 in l3s], 1)
            name = f"cg_{l1}_{l2}"
            self._masters[name] = mat
            self.register_buffer(name, mat.to(torch.get_default_dtype()), persistent=False)

    def _apply(
        self, fn: Callable[[Tensor], Tensor], recurse: bool = True
    ) -> TensorProductNonlinearity:
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            current = getattr(self, name)
            setattr(self, name, master.to(device=current.device, dtype=current.dtype))
        return self

    @property
    def path_count(self) -> int:
        return sum(len(p) for p in self.paths.values())

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        pieces: dict[tuple[int, int, int], Tensor] = {}
        for l1, l2, l3s in self.groups:
            a, b = x[l1], x[l2]
            batch, chans = a.shape[0], a.shape[1]
            outer = (a.unsqueeze(-1) * b.unsqueeze(-2)).reshape(batch * chans, -1)
            y = (outer @ getattr(self, f"cg_{l1}_{l2}")).view(batch, chans, -1)
            for l3, part in zip(l3s, y.split([2 * l3 + 1 for l3 in l3s], dim=-1), strict=True):
                pieces[(l1, l2, l3)] = part
        return {
            l3: torch.cat([pieces[(l1, l2, l3)] for l1, l2 in pairs], dim=1)
            for l3, pairs in self.paths.items()
        }


class CGBlock(nn.Module):
    """``h → BatchNorm → TP nonlinearity → SignalNorm → SO3Linear (+ additive skip)``.

    Output irreps ``{l: ch_out for l in 0..lmax_out}``. The skip adds ``h^l`` for every ``l`` in
    both input and output, zero-padded (fewer input channels) or truncated to the first
    ``ch_out`` channels (more input channels).
    """

    def __init__(self, irreps_in: Irreps, ch_out: int, lmax_out: int, rule: str) -> None:
        super().__init__()
        muls = set(irreps_in.values())
        if len(muls) != 1:
            raise ValueError(
                f"elementwise tensor product needs equal multiplicities, got {irreps_in}"
            )
        self.irreps_in = dict(sorted(irreps_in.items()))
        self.irreps_out = {l: ch_out for l in range(lmax_out + 1)}
        self.batch_norm = BatchNorm(self.irreps_in)
        self.tp = TensorProductNonlinearity(
            muls.pop(), list(self.irreps_in), list(self.irreps_out), rule
        )
        missing = set(self.irreps_out) - set(self.tp.irreps_out)
        if missing:
            raise ValueError(f"degrees {sorted(missing)} cannot be reached from {irreps_in}")
        self.signal_norm = SignalNorm(list(self.tp.irreps_out))
        self.linear = SO3Linear(self.tp.irreps_out, self.irreps_out)

    def forward(self, h: Mapping[int, Tensor]) -> Feature:
        out = self.linear(self.signal_norm(self.tp(self.batch_norm(h))))
        for l, y in out.items():
            if l not in h:
                continue
            skip = h[l]
            ch_in, ch_out = skip.shape[1], y.shape[1]
            if ch_in < ch_out:
                skip = nn.functional.pad(skip, (0, 0, 0, ch_out - ch_in))
            out[l] = y + skip[:, :ch_out]
        return out
