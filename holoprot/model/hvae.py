"""Holographic-(V)AE (Visani et al., arXiv 2209.15567): an SO(3)-equivariant (V)AE on flat signals.

Encoder: ``x / input_norm_const`` → SO3Linear to ``ch_initial x (0..L)`` → CG blocks
(``ch_sizes``, ``lmax_list``) → invariant head ``Linear(h^0) → z_mean`` (and ``z_log_var`` for the
VAE) and frame head ``SO3Linear(h^1 → 2x1e)`` + Gram–Schmidt → frame rows ``(x̂, ŷ, ẑ)``.
Decoder: ``h^0 = Linear(z)``, ``h^1 = SO3Linear(frame rows as 3x1e)`` → CG blocks (reversed
sizes, last one back to ``ch_initial x (0..L)``) → SO3Linear to the data irreps.

Under a rotation ``R`` of the input (``x → x·blockdiag(D)ᵀ``): the latents are invariant, the frame
maps to ``frame·Rᵀ`` and the reconstruction to ``recon·blockdiag(D)ᵀ``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from holoprot._util.devices import PRECISIONS
from holoprot.model.config import CONFIG_PRESETS, HVAEConfig
from holoprot.model.layers import CGBlock, Feature, SO3Linear
from holoprot.model.so3 import irreps_ls

__all__ = [
    "CONFIG_PRESETS",
    "HVAE",
    "HVAEConfig",
    "HVAEOutput",
    "PRECISIONS",
    "coefficient_weights",
    "gram_schmidt_frame",
    "hvae_loss",
]


#: The last CG blocks of the encoder keep fp32 matmuls under ``precision="bf16"``: rounding in
#: them moves the latents most (shipped z = 128 weights, BM5 residues, median over residues:
#: bf16 in the last block alone 1.4 % of the latents' norm, in the one before 1.3 %, in the four
#: before together 0.4 %), and at z = 128 they hold 13 % of the encoder's multiply-adds.
BF16_FP32_TAIL = 2


class HVAEOutput(NamedTuple):
    """Result of :meth:`HVAE.forward`. ``frame_vectors`` are the two learned l = 1 vectors."""

    z_mean: Tensor
    z_log_var: Tensor | None
    z: Tensor
    frame: Tensor
    recon: Tensor
    x_normalised: Tensor
    frame_vectors: Tensor


def gram_schmidt_frame(v: Tensor) -> Tensor:
    """Orthonormal frame from two vectors ``v (B, 2, 3)``: rows ``(x̂, ŷ, ẑ)``, shape ``(B, 3, 3)``.

    ``x = v₁``, ``y = v₂ − (x·v₂ / x·x) x``, ``z = x × y``, each divided by its norm (the
    reference's formula). Equivariant: ``v → v·Rᵀ`` gives ``frame → frame·Rᵀ``.
    Degenerate inputs (``v₁ ≈ 0`` or ``v₂ ∥ v₁``): every squared length in a denominator is
    clamped below at ``s = sqrt(finfo.tiny)`` (1.1e-19 in float32, 1.5e-154 in float64), so values
    and gradients stay finite; the affected rows come out (near) zero — not a rotation — instead of
    NaN. Non-degenerate inputs (squared lengths above ``s``) are unaffected.
    """
    guard = torch.finfo(v.dtype).tiny ** 0.5
    x, v2 = v[:, 0], v[:, 1]
    xx = (x * x).sum(-1, keepdim=True).clamp_min(guard)
    y = v2 - ((x * v2).sum(-1, keepdim=True) / xx) * x
    z = torch.linalg.cross(x, y, dim=-1)
    rows = torch.stack([x, y, z], dim=1)
    return rows * rows.pow(2).sum(-1, keepdim=True).clamp_min(guard).rsqrt()


def _split(x: Tensor, irreps: dict[int, int]) -> Feature:
    """Flat ``(B, dim)`` (channel, then m) → ``{l: (2l+1, B, mul)}``."""
    out: Feature = {}
    start = 0
    for l, mul in irreps.items():
        d = 2 * l + 1
        out[l] = x[:, start : start + mul * d].reshape(x.shape[0], mul, d).permute(2, 0, 1)
        start += mul * d
    return out


def _merge(h: Feature) -> Tensor:
    """``{l: (2l+1, B, mul)}`` → flat ``(B, dim)``."""
    return torch.cat([h[l].permute(1, 2, 0).reshape(h[l].shape[1], -1) for l in sorted(h)], 1)


class HVAE(nn.Module):
    """The H-(V)AE. Inputs/outputs are flat signals ``(B, dim)`` in the data layout
    (l-major, then channel, then m); see :class:`HVAEConfig`.

    Submodules (state-dict prefixes): ``initial_projection``, ``encoder_blocks.{i}``
    (``batch_norm``, ``signal_norm``, ``linear``), ``encoder_mean``, ``encoder_log_var`` (VAE),
    ``frame_learner``, ``decoder_bottleneck``, ``first_decoder_projection``,
    ``decoder_blocks.{i}``, ``final_projection``. ``device="meta"`` builds the parameters as
    shapes only (no memory), e.g. to check a file's tensors before allocating them.
    """

    def __init__(self, config: HVAEConfig, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.config = config
        data = config.irreps
        lmax = config.lmax
        hidden = {l: config.ch_initial for l in range(lmax + 1)}
        self.register_buffer(
            "input_norm_const",
            torch.tensor(config.input_norm_const, dtype=torch.get_default_dtype()),
            persistent=False,
        )
        self.initial_projection = SO3Linear(data, hidden, device)
        self.encoder_blocks = nn.ModuleList()
        irreps = hidden
        for ch, lm in zip(config.ch_sizes, config.lmax_list, strict=True):
            block = CGBlock(irreps, ch, lm, config.ls_rule, device)
            self.encoder_blocks.append(block)
            irreps = block.irreps_out
        ch_last = config.ch_sizes[-1]
        self.encoder_mean = nn.Linear(ch_last, config.latent_dim, device=device)
        self.encoder_log_var = (
            nn.Linear(ch_last, config.latent_dim, device=device) if config.is_vae else None
        )
        self.frame_learner = SO3Linear({1: ch_last}, {1: 2}, device)
        self.decoder_bottleneck = nn.Linear(config.latent_dim, ch_last, device=device)
        self.first_decoder_projection = SO3Linear({1: 3}, {1: ch_last}, device)
        self.decoder_blocks = nn.ModuleList()
        irreps = {0: ch_last, 1: ch_last}
        dec_ch = [*reversed(config.ch_sizes[:-1]), config.ch_initial]
        dec_lmax = [*reversed(config.lmax_list[:-1]), lmax]
        for ch, lm in zip(dec_ch, dec_lmax, strict=True):
            block = CGBlock(irreps, ch, lm, config.ls_rule, device)
            self.decoder_blocks.append(block)
            irreps = block.irreps_out
        self.final_projection = SO3Linear(hidden, data, device)

    def normalise(self, x: Tensor) -> Tensor:
        """Divide raw coefficients by the dataset constant (in the input's dtype)."""
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(
                f"expected input of shape (B, {self.config.dim}), got {tuple(x.shape)}"
            )
        return x / self.input_norm_const.to(x.dtype)

    def _encode_normalised(
        self, x: Tensor, precision: str = "fp32"
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        reduced = len(self.encoder_blocks) - BF16_FP32_TAIL if precision == "bf16" else 0
        h = self.initial_projection(_split(x, self.config.irreps))
        for i, block in enumerate(self.encoder_blocks):
            h = block(h, torch.bfloat16 if i < reduced else None)
        invariants = h[0][0]
        z_mean = self.encoder_mean(invariants)
        z_log_var = None if self.encoder_log_var is None else self.encoder_log_var(invariants)
        vectors = self.frame_learner({1: h[1]})[1].permute(1, 2, 0)  # (B, 2, 3)
        return z_mean, z_log_var, gram_schmidt_frame(vectors), vectors

    def encode(self, x: Tensor, precision: str = "fp32") -> tuple[Tensor, Tensor | None, Tensor]:
        """Raw ``x (B, dim)`` → ``z_mean (B, latent)``, ``z_log_var (B, latent)`` or None (AE),
        ``frame (B, 3, 3)`` (rows x̂, ŷ, ẑ; see :func:`gram_schmidt_frame`), in ``x``'s dtype.

        ``precision`` (one of :data:`PRECISIONS`): ``"fp32"`` (the model's dtype throughout), or
        ``"bf16"``: the linear layers of the CG blocks but the last :data:`BF16_FP32_TAIL` round
        both operands of their matmuls to bfloat16 (8 significant bits) and the products to
        bfloat16 (torch accumulates in fp32); the rest (initial projection, tensor products,
        norms, skips, the last blocks, the heads) stays in ``x``'s dtype. At z = 128 that is
        86 % of the encoder's multiply-adds. Latents move by 0.4 % of their norm (shipped
        weights, 10,000 held-out residues, ``‖z − z_fp64‖ / ‖z_fp64‖``: median 0.42 %, 99th
        percentile 0.56 %, max 0.72 %; fp32: 4e-6), frame rows by 3e-4 (median; 1.2e-3 at the
        99th percentile, up to 0.1 where the two learned vectors are a few degrees apart); SS
        probes, search hits and affinity Pearson do not move beyond their noise
        (benchmarks/eval_precision.py). Faster only where the device
        multiplies bf16 in hardware (:func:`holoprot._util.devices.bf16_supported`); elsewhere
        torch emulates it, slowly.
        """
        z_mean, z_log_var, frame, _ = self._encode_normalised(self.normalise(x), precision)
        return z_mean, z_log_var, frame

    def decode(self, z: Tensor, frame: Tensor) -> Tensor:
        """``z (B, latent)``, ``frame (B, 3, 3)`` → recon ``(B, dim)`` in normalised units."""
        h: Feature = {
            0: self.decoder_bottleneck(z).unsqueeze(0),
            1: self.first_decoder_projection({1: frame.permute(2, 0, 1)})[1],
        }
        for block in self.decoder_blocks:
            h = block(h)
        return _merge(self.final_projection(h))

    def forward(self, x: Tensor, *, sample: bool | None = None) -> HVAEOutput:
        """Encode and decode raw ``x``. ``sample`` (default: VAE in training mode) draws
        ``z = μ + exp(½ log σ²)·ε``; otherwise ``z = μ``."""
        xn = self.normalise(x)
        z_mean, z_log_var, frame, vectors = self._encode_normalised(xn)
        if sample is None:
            sample = self.training and z_log_var is not None
        if sample and z_log_var is None:
            raise ValueError("sampling needs a VAE (is_vae=True)")
        z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean) if sample else z_mean
        recon = self.decode(z, frame)
        return HVAEOutput(z_mean, z_log_var, z, frame, recon, xn, vectors)


def coefficient_weights(degree_weights: Sequence[float], irreps_in: str) -> Tensor:
    """Per-coefficient loss weights (dim,) float32 from one weight per degree l = 0…L of the
    signal `irreps_in`, scaled to mean 1 over the coefficients (so that equal degree weights
    give the plain MSE). ValueError unless there is one finite weight ≥ 0 per degree and some
    degree has a positive weight."""
    ls = irreps_ls(irreps_in)
    w = np.asarray(degree_weights, dtype=np.float64)
    n_degrees = int(ls.max()) + 1
    if w.shape != (n_degrees,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"degree weights {list(degree_weights)}: need {n_degrees} finite weights >= 0"
            f" (l = 0..{n_degrees - 1}), not all 0"
        )
    per_coefficient = w[ls]
    return torch.as_tensor(per_coefficient / per_coefficient.mean(), dtype=torch.float32)


def hvae_loss(
    out: HVAEOutput,
    *,
    lambda_rec: float = 1000.0,
    lambda_kl: float = 0.0,
    weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Reference loss ``λ_rec·MSE(recon, x_normalised) + λ_KL·KL/latent_dim``.

    ``KL = mean_b[−½ Σ_j (1 + log σ²_j − μ_j² − σ²_j)]`` (0 for the AE). With `weights` (dim,)
    (one per coefficient, mean 1; see :func:`coefficient_weights`) the reconstruction term is
    ``mean(w·(recon − x_normalised)²)`` instead (beyond the reference). Returns the loss and
    ``{"loss", "recon_mse", "kl"}`` as floats (``kl`` already divided by latent_dim;
    ``recon_mse`` is always the plain MSE, comparable across weightings).
    """
    mse = nn.functional.mse_loss(out.recon, out.x_normalised)
    rec = mse if weights is None else ((out.recon - out.x_normalised).pow(2) * weights).mean()
    if out.z_log_var is None:
        kl = torch.zeros((), dtype=mse.dtype, device=mse.device)
    else:
        lv, mu = out.z_log_var, out.z_mean
        kl = (-0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(-1)).mean() / mu.shape[-1]
    loss = lambda_rec * rec + lambda_kl * kl
    return loss, {
        "loss": float(loss.detach()),
        "recon_mse": float(mse.detach()),
        "kl": float(kl.detach()),
    }
