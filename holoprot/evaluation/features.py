"""Per-residue features that the probes read: latents of a model (of coefficients, of a structure,
of files), latents of an untrained model of the same architecture, and the input's rotation
invariants. Latents are the encoder's means, (N, latent_dim) float32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from holoprot.embedding.embedder import Embedder, Embedding
from holoprot.io.structure import Structure, read_structure
from holoprot.model import HVAE, HVAEConfig
from holoprot.zernike.neighborhoods import extract_neighborhoods


@torch.no_grad()
def encode_latents(model: HVAE, coefficients: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Latent means (N, latent_dim) float32 of raw `coefficients` (N, dim)."""
    device = next(model.parameters()).device
    out = [
        model.encode(
            torch.as_tensor(np.asarray(coefficients[s : s + batch]), dtype=torch.float32).to(device)
        )[0]
        .float()
        .cpu()
        .numpy()
        for s in range(0, len(coefficients), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.config.latent_dim), np.float32)


def embed_structure(embedder: Embedder, structure: Structure) -> tuple[np.ndarray, Embedding]:
    """Neighbourhoods → float32 projection → encoder for every residue with a Cα.

    Returns the centre residues (M,) (rows of the structure's residue table) and their embedding.
    """
    nbh = extract_neighborhoods(structure, embedder.radius)
    with torch.no_grad():
        coefficients = embedder.basis.project_neighborhoods(nbh, dtype=torch.float32)
    return nbh.residue_index, embedder.embed_coefficients(coefficients)


def latents_of_files(
    embedder: Embedder, paths: Sequence[str | os.PathLike]
) -> tuple[np.ndarray, np.ndarray]:
    """Latents (M, latent_dim) and residue names (M,) of every residue with a Cα in `paths`."""
    latents, names = [], []
    for path in paths:
        structure = read_structure(path)
        residues, emb = embed_structure(embedder, structure)
        latents.append(emb.latent)
        names.append(structure.res_name[residues].astype(str))
    return np.concatenate(latents), np.concatenate(names)


def random_init_model(config: HVAEConfig, seed: int = 0) -> HVAE:
    """An untrained HVAE of `config` (eval mode), initialised from ``torch.manual_seed(seed)``
    without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HVAE(config).eval()


def input_invariants(coefficients: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """Rotation invariants of flat coefficient vectors, (N, F) float64.

    The flat layout is degree-major with ``m`` fastest (:meth:`ZernikeBasis.layout`), so the
    degree-``l`` block of a row is ``K_l`` vectors ``v_k`` of length ``2l+1`` (one per channel
    and radial order). Features: the ``l = 0`` coefficients themselves, then for every ``l ≥ 1``
    the inner products ``⟨v_j, v_k⟩`` for ``j ≤ k`` (invariant because ``D^l(R)`` is
    orthogonal). For the default basis F = 44 + Σ_l K_l(K_l+1)/2 = 4,072.

    Args:
        coefficients: (N, dim) coefficient vectors.
        ls: (dim,) degree of each coefficient, e.g. ``ZernikeBasis().layout()["l"]``.
    """
    x = np.asarray(coefficients, dtype=np.float64)
    ls = np.asarray(ls)
    feats = []
    for l in np.unique(ls):
        cols = np.flatnonzero(ls == l)
        if len(cols) % (2 * l + 1) or np.any(np.diff(cols) != 1):
            raise ValueError(f"degree {l} is not one contiguous block of (2l+1)-vectors")
        v = x[:, cols].reshape(len(x), -1, 2 * l + 1)
        if l == 0:
            feats.append(v[:, :, 0])
        else:
            j, k = np.triu_indices(v.shape[1])
            feats.append(np.einsum("bjm,bkm->bjk", v, v)[:, j, k])
    return np.concatenate(feats, axis=1)


__all__ = [
    "embed_structure",
    "encode_latents",
    "input_invariants",
    "latents_of_files",
    "random_init_model",
]
