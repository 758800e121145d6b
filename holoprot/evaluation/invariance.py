"""Rotation invariance of the latent and equivariance of the frame: atoms rotated (and
translated) in memory, re-projected in float32 and encoded again (:func:`latent_invariance`),
for one structure or for files (:func:`latent_invariance_of_files`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from holoprot.embedding.embedder import Embedder
from holoprot.errors import HoloprotError
from holoprot.evaluation.features import embed_structure
from holoprot.io.structure import Structure, read_structure


def latent_invariance(
    embedder: Embedder, structure: Structure, n_rotations: int = 5, seed: int = 0
) -> dict:
    """How much the latent changes when the atoms are rotated (and translated) in memory.

    Each of ``n_rotations`` uniformly random rotations R (with a random translation, σ = 10 Å)
    is applied to the atom coordinates; neighbourhoods are re-extracted, re-projected in float32
    and encoded. Returns ``max`` and ``mean`` of ‖z_R − z‖ / ‖z‖ over residues and rotations,
    ``frame_error_max`` = ``max |F_R − F·Rᵀ|`` (frames rotate with the atoms; rows x̂, ŷ, ẑ),
    ``n_residues`` and ``n_rotations``.
    """
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(n_rotations, random_state=rng).as_matrix().reshape(-1, 3, 3)
    residues, base = embed_structure(embedder, structure)
    z_norm = np.maximum(np.linalg.norm(base.latent, axis=1), np.finfo(np.float32).tiny)
    relative, frame_error = [], []
    for rot in rotations:
        moved = dataclasses.replace(
            structure, coords=structure.coords @ rot.T + rng.normal(scale=10.0, size=3)
        )
        moved_residues, emb = embed_structure(embedder, moved)
        if not np.array_equal(moved_residues, residues):
            raise HoloprotError(f"{structure.path}: rotation changed the set of centre residues")
        relative.append(np.linalg.norm(emb.latent - base.latent, axis=1) / z_norm)
        frame_error.append(np.abs(emb.frame - base.frame @ rot.T.astype(np.float32)).max())
    rel = np.concatenate(relative)
    return {
        "max": float(rel.max()),
        "mean": float(rel.mean()),
        "frame_error_max": float(max(frame_error)),
        "n_residues": int(len(residues)),
        "n_rotations": int(n_rotations),
    }


def latent_invariance_of_files(
    embedder: Embedder, paths: Sequence[str | os.PathLike], n_rotations: int, seed: int
) -> dict:
    """:func:`latent_invariance` of each structure file (seed ``seed + i`` for the i-th).

    Returns ``max`` and ``frame_error_max`` over the files, ``mean`` weighted by residues ×
    rotations (NaN without files), ``dtype`` (of the projection) and ``structures`` {path: the
    file's result}.
    """
    per_structure = {
        str(p): latent_invariance(embedder, read_structure(p), n_rotations, seed + i)
        for i, p in enumerate(paths)
    }
    counts = [r["n_residues"] * r["n_rotations"] for r in per_structure.values()]
    return {
        "max": max((r["max"] for r in per_structure.values()), default=float("nan")),
        "mean": float(np.average([r["mean"] for r in per_structure.values()], weights=counts))
        if counts
        else float("nan"),
        "frame_error_max": max(
            (r["frame_error_max"] for r in per_structure.values()), default=float("nan")
        ),
        "dtype": "float32",
        "structures": per_structure,
    }


__all__ = ["latent_invariance", "latent_invariance_of_files"]
