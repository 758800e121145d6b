"""The Holographic-(V)AE model: layers, path rules, serialization and reference-weight loading."""

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
