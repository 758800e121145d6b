"""The H-(V)AE encoder's inference pass on NumPy arrays (CPU, float32), without torch.

The same computation as :meth:`HVAE.encode <holoprot.model.HVAE.encode>` in eval mode, layer for
layer, with the batch-norm and signal-norm constants folded into per-layer arrays once:

* input ``x (B, dim) / c`` split into ``{l: (2l+1, B, mul_l)}`` and mixed to ``ch_initial``
  channels (``x^l @ W^l``);
* each CG block: eval batch norm ``(x^0 − μ)·s^0 + β`` and ``x^l·s^l`` (``s = w/√(σ² + ε)``),
  written straight into the degree-concatenated input of the numba tensor product
  (:func:`holoprot.model._tp_cpu.tensor_product`, which also sums each sample's squared norm
  ``q_b``), then ``y^l = (t^l @ (W^l_nz·w_l)) / √(q_b + ε')`` plus ``β'·Σ_i W^0_i`` for
  ``l = 0`` and the skip ``h^l`` on the common channels;
* heads: ``z = h^0 Wᵀ + b`` and the frame from ``h^1 @ W_frame`` by Gram–Schmidt.

Why a second implementation: `holoprot embed` on a CPU then never imports torch (2.2 of the
4 s of a small file's run on 2 cores, and 35 % of the peak memory of a long run), and at batch
512 on 2 cores it encodes 15 % faster than the torch model (on one thread 7 % slower per CPU
second; benchmarks/RESULTS.md). The tests hold it to the torch encoder (latents and frames
within 1e-5, float32) on the shipped weights and on random weights of several architectures,
and to the authors' reference outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from holoprot.model._tp_cpu import SparseTerms, tensor_product
from holoprot.model.cg import nonzero_channels, nonzero_path_indices, nonzero_paths, tp_paths
from holoprot.model.config import HVAEConfig
from holoprot.model.description import load_state_arrays, read_model_files

__all__ = ["CPUEncoder", "gram_schmidt_frame_np"]

#: The eps of the layers (:class:`~holoprot.model.layers.BatchNorm`,
#: :class:`~holoprot.model.layers.SignalNorm`), as HVAE builds them.
BATCH_NORM_EPS = 1e-5
SIGNAL_NORM_EPS = 1e-8


@dataclass(frozen=True)
class _Block:
    """One CG block's folded arrays (float32): batch-norm scale ``{l: (mul,)}`` and the l = 0
    shift (``−μ·s⁰ + β``), the tensor product's terms, per output degree the folded weight
    ``(K_l, ch)`` (None where the product has no nonzero path of that degree) and the
    l = 0 bias row ``(ch,)``."""

    ls_in: tuple[int, ...]
    scale: dict[int, np.ndarray]
    shift0: np.ndarray | None
    terms: SparseTerms
    weights: dict[int, np.ndarray | None]
    bias0: np.ndarray | None
    ch_out: int


def gram_schmidt_frame_np(v: np.ndarray) -> np.ndarray:
    """:func:`holoprot.model.gram_schmidt_frame` on NumPy: ``v (B, 2, 3)`` → rows
    ``(x̂, ŷ, ẑ)`` ``(B, 3, 3)`` in ``v``'s dtype, squared lengths clamped below at
    ``sqrt(finfo.tiny)``."""
    guard = np.sqrt(np.finfo(v.dtype).tiny)
    x, v2 = v[:, 0], v[:, 1]
    xx = np.maximum((x * x).sum(-1, keepdims=True), guard)
    y = v2 - ((x * v2).sum(-1, keepdims=True) / xx) * x
    z = np.cross(x, y)
    rows = np.stack([x, y, z], axis=1)
    return rows / np.sqrt(np.maximum((rows * rows).sum(-1, keepdims=True), guard))


def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(…, K) @ (K, N)`` as one GEMM over the leading dimensions (x C-contiguous)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])


class CPUEncoder:
    """Encoder of an H-(V)AE from its config and state dict (NumPy arrays, as
    ``HVAE.state_dict()`` names them; decoder tensors are ignored).

    ``encode(x)`` maps raw coefficients ``x (B, dim)`` to ``z_mean (B, latent_dim)`` and
    ``frame (B, 3, 3)``, float32, on the threads :meth:`use_threads` sets (default: numba's and
    the BLAS library's, all CPUs).
    """

    def __init__(self, config: HVAEConfig, state: Mapping[str, np.ndarray]) -> None:
        self.config = config
        self.threads: int | None = None

        def f32(name: str) -> np.ndarray:
            return np.ascontiguousarray(state[name], dtype=np.float32)

        data = config.irreps
        self._split = [(l, mul) for l, mul in data.items()]
        self._initial = {l: f32(f"initial_projection.weights.{l}") for l in data}
        self._blocks: list[_Block] = []
        irreps = {l: config.ch_initial for l in range(config.lmax + 1)}
        for i, (ch, lm) in enumerate(zip(config.ch_sizes, config.lmax_list, strict=True)):
            self._blocks.append(_fold_block(f"encoder_blocks.{i}.", irreps, ch, lm, config, f32))
            irreps = {l: ch for l in range(lm + 1)}
        self._mean_w = f32("encoder_mean.weight").T.copy()
        self._mean_b = f32("encoder_mean.bias")
        self._frame_w = f32("frame_learner.weights.1")
        self._norm = np.float32(config.input_norm_const)

    @classmethod
    def load(cls, path: str | Path) -> tuple[CPUEncoder, dict[str, Any]]:
        """The encoder of a saved model (``.safetensors``, ``.json`` or stem; checked as
        :func:`~holoprot.model.description.read_model_files` does) and the model's metadata."""
        files = read_model_files(path)
        return cls(files.config, load_state_arrays(files)), files.metadata

    def use_threads(self, threads: int) -> None:
        """Run on `threads` threads: the tensor-product kernel's, and the BLAS library's, for the
        whole process (as ``torch.set_num_threads`` is)."""
        from threadpoolctl import threadpool_limits

        self.threads = threads
        threadpool_limits(limits=threads, user_api="blas")

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw coefficients ``x (B, dim)`` → ``z_mean (B, latent_dim)``, ``frame (B, 3, 3)``
        (rows x̂, ŷ, ẑ), float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(
                f"expected input of shape (B, {self.config.dim}), got {tuple(x.shape)}"
            )
        batch = len(x)
        xn = x / self._norm
        h: dict[int, np.ndarray] = {}
        start = 0
        for l, mul in self._split:
            d = 2 * l + 1
            field = xn[:, start : start + mul * d].reshape(batch, mul, d).transpose(2, 0, 1)
            h[l] = _matmul(np.ascontiguousarray(field), self._initial[l])
            start += mul * d
        for block in self._blocks:
            h = self._block(block, h)
        z_mean = h[0][0] @ self._mean_w + self._mean_b
        vectors = _matmul(h[1], self._frame_w).transpose(1, 2, 0)  # (B, 2, 3)
        return z_mean, gram_schmidt_frame_np(np.ascontiguousarray(vectors))

    def _block(self, block: _Block, h: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        batch, chans = h[block.ls_in[0]].shape[1:]
        x = np.empty((sum(2 * l + 1 for l in block.ls_in), batch, chans), dtype=np.float32)
        row = 0
        for l in block.ls_in:
            d = 2 * l + 1
            out = x[row : row + d]
            np.multiply(h[l], block.scale[l], out=out)
            if l == 0:
                out += block.shift0
            row += d
        threads = self.threads if self.threads is not None else _numba_threads()
        blocks, sq = tensor_product(x, block.terms, threads)
        t = dict(zip((int(l3) for l3 in block.terms.degrees), blocks, strict=True))
        inv = 1 / np.sqrt(sq.astype(np.float32) + np.float32(SIGNAL_NORM_EPS))
        out_h: dict[int, np.ndarray] = {}
        for l, w in block.weights.items():
            if w is None:
                y = np.zeros((2 * l + 1, batch, block.ch_out), dtype=np.float32)
            else:
                y = _matmul(t[l], w)
                y *= inv[:, None]
            if l == 0 and block.bias0 is not None:
                y += block.bias0
            if l in h:
                common = min(h[l].shape[-1], y.shape[-1])
                y[..., :common] += h[l][..., :common]
            out_h[l] = y
        return out_h


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def _fold_block(
    prefix: str,
    irreps: dict[int, int],
    ch: int,
    lmax_out: int,
    config: HVAEConfig,
    f32: Any,
) -> _Block:
    """Fold one CG block's tensors (as :class:`~holoprot.model.layers.CGBlock` uses them)."""
    ls_in = tuple(sorted(irreps))
    mul = irreps[ls_in[0]]
    bn_w, bn_var = f32(prefix + "batch_norm.weight"), f32(prefix + "batch_norm.running_var")
    scale, start = {}, 0
    for l in ls_in:
        var = bn_var[start : start + irreps[l]]
        scale[l] = (1 / np.sqrt(var + np.float32(BATCH_NORM_EPS))) * bn_w[start : start + irreps[l]]
        start += irreps[l]
    shift0 = None
    if 0 in irreps:
        shift0 = (
            f32(prefix + "batch_norm.bias") - f32(prefix + "batch_norm.running_mean") * scale[0]
        )
    paths = tp_paths(ls_in, range(lmax_out + 1), config.ls_rule)
    kept, nonzero = nonzero_path_indices(paths), nonzero_paths(paths)
    weights: dict[int, np.ndarray | None] = {}
    bias0 = None
    for l in range(lmax_out + 1):
        if l not in paths:
            continue
        w = f32(f"{prefix}linear.weights.{l}")
        if l in nonzero:
            rows = w[nonzero_channels(kept[l], mul)]
            weights[l] = np.ascontiguousarray(rows * f32(f"{prefix}signal_norm.weights.{l}"))
        else:
            weights[l] = None
        if l == 0:
            bias0 = f32(prefix + "signal_norm.bias") * w.sum(0)
    return _Block(ls_in, scale, shift0, SparseTerms.build(ls_in, nonzero), weights, bias0, ch)
