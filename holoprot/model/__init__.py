"""The Holographic-(V)AE model: SO(3) irreps and Wigner-D helpers (`so3`), Clebsch–Gordan path
rules, equivariant layers, the H-(V)AE, safetensors I/O, named weights and reference loading.

Imports `holoprot._util` and `holoprot.errors` only: the model knows nothing of files.
"""

from __future__ import annotations

from holoprot.model.hvae import (
    HVAE,
    HVAEConfig,
    HVAEOutput,
    coefficient_weights,
    gram_schmidt_frame,
    hvae_loss,
)
from holoprot.model.serialization import load_model_file, save_model

__all__ = [
    "HVAE",
    "HVAEConfig",
    "HVAEOutput",
    "coefficient_weights",
    "gram_schmidt_frame",
    "hvae_loss",
    "load_model_file",
    "save_model",
]
