"""Reconstruction metrics: how close the decoder's output is to the normalised input.

The paper's cosine loss (1 − the √(2l+1)-weighted cosine), the plain cosine, MSE in normalised
units and R² against a mean input, per row (:func:`reconstruction_rows`) and averaged
(:func:`summarise_reconstruction`), overall and per degree l. Inputs are raw Zernike coefficients
(N, dim) as in the dataset cache; the model encodes with z = the latent mean.
"""

from __future__ import annotations

import numpy as np
import torch

from holoprot.errors import HoloprotError
from holoprot.model import HVAE


def cosines(x: np.ndarray, y: np.ndarray, ls: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row cosine similarities of two (N, dim) arrays, in float64.

    Returns ``overall`` (N,): the plain cosine of the flat vectors (every coefficient weighs the
    same); ``weighted`` (N,): the reference's cosine (SPEC §4.6), an l-wise dot product in which
    every product of degree l is weighted by √(2l+1); ``per_l`` (N, L): the cosine restricted to
    the coefficients of each degree in ``np.unique(ls)`` (identical in both conventions, the
    weight cancels within one l). A zero vector has cosine 0.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ls = np.asarray(ls)
    w = np.sqrt(2.0 * ls + 1.0)

    def cos(a: np.ndarray, b: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
        dot = (weight * a * b).sum(axis=1)
        norm = np.sqrt((weight * a * a).sum(axis=1) * (weight * b * b).sum(axis=1))
        return dot / np.maximum(norm, np.finfo(np.float64).tiny)

    per_l = [cos(x[:, ls == l], y[:, ls == l]) for l in np.unique(ls)]
    return {
        "overall": cos(x, y),
        "weighted": cos(x, y, w),
        "per_l": np.stack(per_l, axis=1) if per_l else np.zeros((len(x), 0)),
    }


@torch.no_grad()
def reconstruction_rows(
    model: HVAE,
    coefficients: np.ndarray,
    ls: np.ndarray,
    mean: np.ndarray | None = None,
    batch: int = 1024,
    keep: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-row reconstruction figures of raw `coefficients` (N, dim) (z = latent mean).

    Returns float64 arrays ``plain`` and ``weighted`` (N,) and ``per_l`` (N, L) (cosines, see
    :func:`cosines`); ``sq_error`` (N, L): Σ (recon − x)² over each degree's coefficients, in
    normalised units; with `mean` (dim,) (normalised units), ``sq_deviation`` (N, L):
    Σ (x − mean)² likewise; ``latent`` (N, latent_dim) float32; and with `keep` (dim,) bool,
    ``recon`` (N, keep.sum()) float32: those coefficients of the reconstruction (normalised).
    """
    if model.training:
        raise HoloprotError("reconstruction needs the model in eval mode")
    if len(coefficients) == 0:
        raise HoloprotError("reconstruction: no coefficients given")
    device = next(model.parameters()).device
    ls = np.asarray(ls)
    blocks = [ls == l for l in np.unique(ls)]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(coefficients), batch):
        x = torch.as_tensor(np.asarray(coefficients[start : start + batch]), dtype=torch.float32)
        out = model(x.to(device), sample=False)
        xn = out.x_normalised.cpu().numpy().astype(np.float64)
        recon = out.recon.cpu().numpy().astype(np.float64)
        c = cosines(xn, recon, ls)
        row = {
            "plain": c["overall"],
            "weighted": c["weighted"],
            "per_l": c["per_l"],
            "sq_error": np.stack([((recon - xn)[:, b] ** 2).sum(1) for b in blocks], axis=1),
            "latent": out.z_mean.float().cpu().numpy(),
        }
        if keep is not None:
            row["recon"] = out.recon[:, torch.as_tensor(keep)].float().cpu().numpy()
        if mean is not None:
            dev = xn - np.asarray(mean, np.float64)
            row["sq_deviation"] = np.stack([(dev[:, b] ** 2).sum(1) for b in blocks], axis=1)
        for key, value in row.items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


def summarise_reconstruction(rows: dict[str, np.ndarray], ls: np.ndarray) -> dict:
    """Means of :func:`reconstruction_rows` over its rows.

    Returns ``overall`` (plain cosine), ``weighted`` (√(2l+1)-weighted cosine),
    ``weighted_cosine_loss`` (1 − weighted: the paper's cosine loss), ``mse`` (mean over rows and
    coefficients, normalised units), ``r2`` (1 − Σ squared error / Σ squared deviation from the
    mean; with ``sq_deviation`` only), per degree ``per_l`` (cosine; the loss is 1 − it, the
    weight cancels within one degree), ``per_l_mse``, ``per_l_r2``, and ``n``.
    """
    degrees = np.unique(np.asarray(ls))
    dims = np.array([np.count_nonzero(np.asarray(ls) == l) for l in degrees])
    n = len(rows["plain"])
    if n == 0:
        raise HoloprotError("summarise_reconstruction: no rows")
    sq_error = rows["sq_error"].sum(axis=0)
    out = {
        "overall": float(rows["plain"].mean()),
        "weighted": float(rows["weighted"].mean()),
        "weighted_cosine_loss": float(1.0 - rows["weighted"].mean()),
        "mse": float(sq_error.sum() / (n * dims.sum())),
        "per_l": {int(l): float(v) for l, v in zip(degrees, rows["per_l"].mean(0), strict=True)},
        "per_l_mse": {
            int(l): float(v) for l, v in zip(degrees, sq_error / (n * dims), strict=True)
        },
        "n": int(n),
    }
    if "sq_deviation" in rows:
        sq_dev = rows["sq_deviation"].sum(axis=0)
        out["r2"] = float(1.0 - sq_error.sum() / sq_dev.sum())
        out["per_l_r2"] = {
            int(l): float(v) for l, v in zip(degrees, 1.0 - sq_error / sq_dev, strict=True)
        }
    return out


@torch.no_grad()
def reconstruction_cosines(
    model: HVAE, coefficients: np.ndarray, ls: np.ndarray, batch: int = 1024
) -> dict:
    """Mean cosine similarity between normalised input and reconstruction (z = latent mean).

    Args:
        model: an HVAE in eval mode.
        coefficients: raw Zernike coefficients (N, dim), as in the dataset cache.
        ls: degree l of each coefficient (dim,), e.g. ``ZernikeBasis().layout()["l"]``.
        batch: rows per forward pass.

    Returns ``overall`` (mean over residues of the plain cosine of the flat vectors),
    ``weighted`` (the same with the reference's √(2l+1) weighting, see :func:`cosines`),
    ``per_l`` {l: mean cosine over the degree-l coefficients} and ``n`` (residues). The input
    normalisation divides by one scalar, so the cosines are those of the raw coefficients too.
    """
    if model.training:
        raise HoloprotError("reconstruction_cosines needs the model in eval mode")
    rows = reconstruction_rows(model, coefficients, ls, batch=batch)
    summary = summarise_reconstruction(rows, ls)
    return {key: summary[key] for key in ("overall", "weighted", "per_l", "n")}


__all__ = ["cosines", "reconstruction_cosines", "reconstruction_rows", "summarise_reconstruction"]
