"""Saving and loading :class:`~holoprot.model.hvae.HVAE` weights (safetensors + JSON, no pickle).

A model ``<stem>`` is two files: ``<stem>.safetensors`` (the full ``state_dict``: parameters and
batch-norm running statistics) and ``<stem>.json``::

    {"format": "holoprot-hvae", "format_version": 1, "holoprot_version": "...",
     "config": HVAEConfig.to_dict(), "metadata": {...}, "sha256": "<hex of the .safetensors>",
     "metadata_sha256": "<hex of the other fields>"}

The JSON is sealed (:func:`holoprot.hashing.seal`): editing any field is refused on loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import holoprot
from holoprot.errors import HoloprotError
from holoprot.hashing import check_seal, seal, sha256_file
from holoprot.model.hvae import HVAE, HVAEConfig
from holoprot.weights import model_files

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model_file", "save_model"]

FORMAT = "holoprot-hvae"
FORMAT_VERSION = 1


def save_model(model: HVAE, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; return the weights path.

    ``metadata`` must be JSON-serialisable (e.g. training data, epoch, losses).
    """
    weights, sidecar = model_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp_w = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    tmp_j = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp_w))
        info = seal(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "holoprot_version": holoprot.__version__,
                "config": model.config.to_dict(),
                "metadata": metadata,
                "sha256": sha256_file(tmp_w),
            }
        )
        tmp_j.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        os.replace(tmp_w, weights)
        os.replace(tmp_j, sidecar)
    finally:
        for tmp in (tmp_w, tmp_j):
            tmp.unlink(missing_ok=True)
    return weights


def load_model_file(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[HVAE, dict[str, Any]]:
    """Load a model saved by :func:`save_model` (``path``: the ``.safetensors``, the ``.json`` or
    the stem). Returns ``(model in eval mode, metadata)``. Raises
    :class:`~holoprot.errors.HoloprotError` if a file is missing or corrupt, a checksum (of the
    tensors or of the JSON) does not match, or the tensors do not fit the stored config."""
    weights, sidecar = model_files(path)
    if not weights.is_file():
        raise HoloprotError(f"{weights}: weights file not found")
    if not sidecar.is_file():
        raise HoloprotError(
            f"{weights}: no model description {sidecar.name} beside it"
            " (weights are a .safetensors file plus its .json)"
        )
    try:
        info = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HoloprotError(f"{sidecar}: not a readable model description ({exc})") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise HoloprotError(f"{sidecar}: not a {FORMAT} model description")
    if info.get("format_version") != FORMAT_VERSION:
        raise HoloprotError(f"{sidecar}: unsupported format_version {info.get('format_version')!r}")
    check_seal(info, sidecar)
    if sha256_file(weights) != info.get("sha256"):
        raise HoloprotError(
            f"{weights}: sha256 does not match {sidecar.name} (file changed or corrupt)"
        )
    try:
        config = HVAEConfig.from_dict(info["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HoloprotError(f"{sidecar}: invalid model config ({exc})") from exc
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc
    model = HVAE(config)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise HoloprotError(
            f"{weights}: tensors do not match the config"
            f" (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise HoloprotError(
                f"{weights}: tensor {k} has shape {tuple(v.shape)},"
                f" config needs {tuple(own[k].shape)}"
            )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return model, info.get("metadata", {})
