"""The Holographic-(V)AE model: SO(3) irreps and Wigner-D helpers (`so3`), Clebsch–Gordan path
rules, the architecture as data (`config`), equivariant layers, the H-(V)AE, safetensors I/O,
named weights and reference loading, and the torch-free CPU encoder (`cpu_encoder`).

Imports `holoprot._util` and `holoprot.errors` only: the model knows nothing of files. The torch
parts are imported on first use, so `config`, `cg`, `weights` and `cpu_encoder` work without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CPUEncoder": "holoprot.model.cpu_encoder",
    "HVAE": "holoprot.model.hvae",
    "HVAEConfig": "holoprot.model.config",
    "HVAEOutput": "holoprot.model.hvae",
    "coefficient_weights": "holoprot.model.hvae",
    "gram_schmidt_frame": "holoprot.model.hvae",
    "hvae_loss": "holoprot.model.hvae",
    "load_model_file": "holoprot.model.serialization",
    "save_model": "holoprot.model.serialization",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'holoprot.model' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too (so that `dir()` and the API docs see them)."""
    return sorted({*globals(), *_LAZY})
