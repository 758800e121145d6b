"""Rotation helpers for flat SO(3) signals (e3nn real basis, ``D^1(R) = R``).

A flat signal of irreps ``"44x0e+40x1e+..."`` is a vector ``x`` of dimension ``Σ mul_l (2l+1)``,
laid out irrep-block by irrep-block, then channel, then ``m``. Rotating the underlying object by
``R`` (column vectors, ``p' = R p``) maps the signal to ``x' = x · blockdiag(D)ᵀ`` with
``D = D^l(R)`` repeated ``mul_l`` times per block.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["irreps_ls", "parse_irreps", "rotate_flat", "wigner_d_blocks"]

_IRREP = re.compile(r"(?:(\d+)\s*x\s*)?(\d+)\s*([eoy])")


def parse_irreps(irreps: object) -> list[tuple[int, int, int]]:
    """``(mul, l, parity)`` per block of an irreps string in e3nn's syntax (``"44x0e+40x1e"``;
    a missing multiplicity is 1, parity ``e`` = +1, ``o`` = −1, ``y`` = (−1)^l), without
    importing e3nn; e3nn ``Irreps`` objects are read through their string form. ValueError
    for anything else."""
    text = str(irreps).strip()
    if not text:
        return []
    out = []
    for part in text.split("+"):
        match = _IRREP.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"{irreps!r} is not an irreps string (block {part.strip()!r})")
        mul, l, p = int(match.group(1) or 1), int(match.group(2)), match.group(3)
        out.append((mul, l, {"e": 1, "o": -1}.get(p, (-1) ** l)))
    return out


def _parse(irreps: object) -> list[tuple[int, int]]:
    return [(mul, l) for mul, l, _ in parse_irreps(irreps)]


def irreps_ls(irreps: object) -> np.ndarray:
    """Degree ``l`` of every index of the flat signal: ``(dim,)`` int64 array."""
    parts = [np.full(mul * (2 * l + 1), l, dtype=np.int64) for mul, l in _parse(irreps)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def wigner_d_blocks(R: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """Wigner-D matrices ``[D^0(R), …, D^lmax(R)]``, float64, on ``R``'s device.

    ``D^l`` has shape ``(2l+1, 2l+1)``; ``D^1 = R``. e3nn builds the so(3) generators in the
    *default* dtype, so the call runs with float64 as default dtype (restored afterwards);
    this makes the blocks orthogonal to ~1e-15 instead of ~1e-7.
    """
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {tuple(R.shape)}")
    import torch

    from holoprot._util.e3nn import o3

    R64 = R.detach().to(torch.float64)
    with _default_dtype(torch.float64):
        alpha, beta, gamma = o3.matrix_to_angles(R64)
        return [o3.wigner_D(l, alpha, beta, gamma).to(R.device) for l in range(lmax + 1)]


def rotate_flat(x: torch.Tensor, irreps: object, R: torch.Tensor) -> torch.Tensor:
    """Rotate flat signals ``x (B, dim)``: returns ``x · blockdiag(D)ᵀ`` in ``x``'s dtype."""
    import torch

    parsed = _parse(irreps)
    lmax = max((l for _, l in parsed), default=0)
    blocks = wigner_d_blocks(R, lmax)
    out = []
    start = 0
    for mul, l in parsed:
        d = 2 * l + 1
        chunk = x[:, start : start + mul * d].reshape(x.shape[0], mul, d)
        out.append((chunk @ blocks[l].to(device=x.device, dtype=x.dtype).T).reshape(x.shape[0], -1))
        start += mul * d
    if start != x.shape[1]:
        raise ValueError(f"signal has {x.shape[1]} entries, irreps {irreps} need {start}")
    return torch.cat(out, dim=1)
