"""Equivariant layers of the H-(V)AE, acting on dicts of spherical tensors.

A feature is a dict ``{l: Tensor(2l+1, B, mul_l)}`` (all parity e) — *m-major* layout: channel
mixing is then a plain ``(2l+1)·B × mul`` matmul and the channel-elementwise tensor product a
matmul over ``m`` with ``B·mul`` columns, with no transposes. ``irreps`` below is the dict
``{l: mul_l}``. Rotating the input by ``R`` maps ``x^l_{m,b,c} → Σ_n D^l(R)_{mn} x^l_{n,b,c}``;
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
    """Per-degree channel mixing ``y^l_{m,b,j} = Σ_i x^l_{m,b,i} W^l_{ij}`` (no bias).

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
        return {l: x[l] @ self.weights[str(l)] for l in self.ls}


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

    def inverse_norm(self, x: Mapping[int, Tensor]) -> Tensor:
        """``1 / N_b`` as a ``(B, 1)`` tensor."""
        sq = sum(x[l].pow(2).sum(dim=(0, 2)) / (2 * l + 1) for l in self.ls)
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

    Implementation: paths sharing ``(l1, l2)`` are contracted together — the concatenated CG
    tensors of all its ``l3``, ``(Σ(2l3+1), (2l1+1)(2l2+1))``, times the outer product
    ``x^{l1} ⊗ x^{l2}`` viewed as ``((2l1+1)(2l2+1), B·C)``, one matmul per pair; each ``l3``
    output is then one ``stack`` of row slices. CG tensors are float64 masters re-cast to the
    module's dtype/device, so ``.double()`` gets exact float64 coefficients.
    """

    def __init__(self, mul: int, ls_in: Sequence[int], ls_out: Sequence[int], rule: str) -> None:
        super().__init__()
        self.mul = mul
        self.ls_in = sorted(ls_in)
        self.paths = tp_paths(self.ls_in, ls_out, rule)
        self.irreps_out = {l3: len(p) * mul for l3, p in self.paths.items()}
        offsets, start = {}, 0
        for l in self.ls_in:
            offsets[l] = start
            start += 2 * l + 1
        groups: dict[tuple[int, int], list[int]] = {}
        for l3, pairs in self.paths.items():
            for pair in pairs:
                groups.setdefault(pair, []).append(l3)
        # (l1, l2, row offset of l1, row offset of l2, l3s, buffer name)
        self.groups = []
        self._masters: dict[str, Tensor] = {}
        for (l1, l2), l3s in groups.items():
            d1, d2 = 2 * l1 + 1, 2 * l2 + 1
            mat = torch.cat([clebsch_gordan(l1, l2, l3).reshape(d1 * d2, -1) for l3 in l3s], 1)
            name = f"cg_{l1}_{l2}"
            self._masters[name] = mat.T.contiguous()
            self.register_buffer(name, mat.T.to(torch.get_default_dtype()), persistent=False)
            self.groups.append((l1, l2, offsets[l1], offsets[l2], tuple(l3s), name))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> nn.Module:
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            current = getattr(self, name)
            setattr(self, name, master.to(device=current.device, dtype=current.dtype))
        return self

    @property
    def path_count(self) -> int:
        return sum(len(p) for p in self.paths.values())

    def forward(self, x: Mapping[int, Tensor]) -> Feature:
        signal = torch.cat([x[l] for l in self.ls_in], dim=0)
        _, batch, chans = signal.shape
        flat = signal.reshape(signal.shape[0], batch * chans)
        pieces: dict[tuple[int, int, int], Tensor] = {}
        for l1, l2, o1, o2, l3s, name in self.groups:
            a = flat[o1 : o1 + 2 * l1 + 1]
            b = flat[o2 : o2 + 2 * l2 + 1]
            outer = (a[:, None, :] * b[None, :, :]).reshape(-1, batch * chans)
            y = (getattr(self, name) @ outer).view(-1, batch, chans)
            for l3, part in zip(l3s, y.split([2 * l3 + 1 for l3 in l3s]), strict=True):
                pieces[(l1, l2, l3)] = part
        return {
            l3: torch.stack([pieces[(l1, l2, l3)] for l1, l2 in pairs], dim=2).view(
                2 * l3 + 1, batch, len(pairs) * chans
            )
            for l3, pairs in self.paths.items()
        }


class CGBlock(nn.Module):
    """``h → BatchNorm → TP nonlinearity → SignalNorm → SO3Linear (+ additive skip)``.

    Output irreps ``{l: ch_out for l in 0..lmax_out}``. The skip adds ``h^l`` for every ``l`` in
    both input and output, zero-padded (fewer input channels) or truncated to the first
    ``ch_out`` channels (more input channels). The signal norm is folded into the linear layer:
    ``Linear(t/N_b·w_l + β δ_l0) = Linear_{W·w_l}(t)/N_b + β·Σ_i W^0_{i·}``.
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
        t = self.tp(self.batch_norm(h))
        inv = self.signal_norm.inverse_norm(t)
        out: Feature = {}
        for l in self.linear.ls:
            w = self.linear.weights[str(l)]
            y = (t[l] @ (w * self.signal_norm.weights[str(l)])) * inv
            if l == 0:
                y = y + self.signal_norm.bias * w.sum(0)
            if l in h:
                skip = h[l]
                ch_in, ch_out = skip.shape[-1], y.shape[-1]
                if ch_in < ch_out:
                    skip = nn.functional.pad(skip, (0, ch_out - ch_in))
                y = y + skip[..., :ch_out]
            out[l] = y
        return out
