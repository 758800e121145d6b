"""Saving and loading :class:`~holoprot.model.hvae.HVAE` weights with torch (safetensors + JSON,
no pickle): ``<stem>.safetensors`` holds the full ``state_dict`` (parameters and batch-norm
running statistics), ``<stem>.json`` the sealed description; its layout and the checks made on
loading are :mod:`holoprot.model.description`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

import holoprot
from holoprot._util.atomic import atomic_path, new_file_mode
from holoprot._util.hashing import seal, sha256_file
from holoprot.errors import HoloprotError
from holoprot.model.description import (
    FORMAT,
    FORMAT_VERSION,
    TENSOR_DTYPES,
    ModelFiles,
    read_model_files,
)
from holoprot.model.hvae import HVAE
from holoprot.model.weights import model_files

__all__ = ["load_model_file", "model_from_files", "save_model"]


def save_model(
    model: HVAE, path: str | Path, metadata: dict[str, Any], tensor_dtype: str = "F32"
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; return the weights path.

    ``metadata`` must be JSON-serialisable (e.g. training data, epoch, losses). `tensor_dtype`
    ``F16`` stores every tensor rounded to float16 (half the file; loaded back as float32).
    """
    if tensor_dtype not in TENSOR_DTYPES:
        raise ValueError(f"tensor_dtype must be one of {TENSOR_DTYPES}, got {tensor_dtype!r}")
    dtype = torch.float16 if tensor_dtype == "F16" else torch.float32
    weights, sidecar = model_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    # temporary names from mkstemp (_util.atomic); the weights are renamed into place first,
    # then the description: a kill between the two leaves checksums that disagree (refused)
    with atomic_path(sidecar) as tmp_j, atomic_path(weights) as tmp_w:
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
        if tensor_dtype == "F16":  # a weight beyond float16's range (65504) became infinite
            overflow = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
            if overflow:
                raise ValueError(f"{overflow[0]}: not finite in {tensor_dtype}")
        save_file(state, str(tmp_w))
        os.chmod(tmp_w, new_file_mode())  # safetensors writes 0600 whatever the umask
        info = seal(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "holoprot_version": holoprot.__version__,
                "config": model.config.to_dict(),
                "metadata": metadata,
                "sha256": sha256_file(tmp_w),
                **({"tensor_dtype": tensor_dtype} if tensor_dtype != "F32" else {}),
            }
        )
        tmp_j.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return weights


def load_model_file(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[HVAE, dict[str, Any]]:
    """Load a model saved by :func:`save_model` (``path``: the ``.safetensors``, the ``.json`` or
    the stem). Returns ``(model in eval mode, metadata)``. Raises
    :class:`~holoprot.errors.HoloprotError` if a file is missing or corrupt, a checksum (of the
    tensors or of the JSON) does not match, or the tensors do not fit the stored config
    (:func:`~holoprot.model.description.read_model_files`)."""
    files = read_model_files(path)
    return model_from_files(files, device), files.metadata


def model_from_files(files: ModelFiles, device: str | torch.device = "cpu") -> HVAE:
    """The model, in eval mode on `device`, of files already checked by
    :func:`~holoprot.model.description.read_model_files` (its tensors parsed from the bytes
    read there; float16-stored tensors widened to float32)."""
    try:
        state = {k: v.float() for k, v in load(files.data).items()}
    except SafetensorError as exc:
        raise HoloprotError(f"{files.weights}: unreadable safetensors file ({exc})") from exc
    model = HVAE(files.config, device="meta")  # shapes only, until the file's tensors replace them
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
