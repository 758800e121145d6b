"""Saving and loading :class:`~holoprot.model.hvae.HVAE` weights (safetensors + JSON, no pickle).

A model ``<stem>`` is two files: ``<stem>.safetensors`` (the full ``state_dict``: parameters and
batch-norm running statistics) and ``<stem>.json``::

    {"format": "holoprot-hvae", "format_version": 1, "holoprot_version": "...",
     "config": HVAEConfig.to_dict(), "metadata": {...}, "sha256": "<hex of the .safetensors>",
     "metadata_sha256": "<hex of the other fields>"}

The JSON is sealed (:func:`holoprot._util.hashing.seal`): editing any field is refused on loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import holoprot
from holoprot._util.atomic import atomic_path, new_file_mode
from holoprot._util.hashing import check_seal, seal, sha256_file
from holoprot.errors import HoloprotError
from holoprot.model.hvae import HVAE, HVAEConfig
from holoprot.model.weights import model_files

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model_file", "save_model"]

FORMAT = "holoprot-hvae"
FORMAT_VERSION = 1
#: safetensors' names of the dtypes a model holds.
_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
#: A model description is a few kB; refuse to parse anything far larger.
MAX_DESCRIPTION_BYTES = 1 << 20


def save_model(model: HVAE, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; return the weights path.

    ``metadata`` must be JSON-serialisable (e.g. training data, epoch, losses).
    """
    weights, sidecar = model_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    # temporary names from mkstemp (_util.atomic); the weights are renamed into place first,
    # then the description: a kill between the two leaves checksums that disagree (refused)
    with atomic_path(sidecar) as tmp_j, atomic_path(weights) as tmp_w:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
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
    tensors or of the JSON) does not match, or the tensors do not fit the stored config."""
    weights, sidecar = model_files(path)
    if not weights.is_file():
        raise HoloprotError(f"{weights}: weights file not found")
    if not sidecar.is_file():
        raise HoloprotError(
            f"{weights}: no model description {sidecar.name} beside it"
            " (weights are a .safetensors file plus its .json)"
        )
    if sidecar.stat().st_size > MAX_DESCRIPTION_BYTES:
        raise HoloprotError(
            f"{sidecar}: {sidecar.stat().st_size} bytes, more than a model description can be"
            f" ({MAX_DESCRIPTION_BYTES} bytes)"
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
    model = HVAE(config, device="meta")  # shapes only, until the file's tensors replace them
    _check_tensor_shapes(weights, model)
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device).eval()
    return model, info.get("metadata", {})


def _check_tensor_shapes(weights: Path, skeleton: HVAE) -> None:
    """Refuse weights whose tensors are not exactly those of `skeleton` (a model whose
    parameters are on torch's meta device: shapes only, no memory), reading the file's tensor
    names and shapes from its safetensors header. So a description asking for huge layers is
    refused before they are allocated, unless the file really holds tensors of that size."""
    own = {
        k: (tuple(v.shape), _SAFETENSORS_DTYPES[v.dtype]) for k, v in skeleton.state_dict().items()
    }
    try:
        with safe_open(str(weights), framework="pt") as f:
            stored = {
                k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                for k in f.keys()  # noqa: SIM118
            }
    except (SafetensorError, OSError) as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc
    missing, unexpected = sorted(set(own) - set(stored)), sorted(set(stored) - set(own))
    if missing or unexpected:
        raise HoloprotError(
            f"{weights}: tensors do not match the config"
            f" (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, (shape, dtype) in stored.items():
        if (shape, dtype) != own[k]:
            raise HoloprotError(
                f"{weights}: tensor {k} is {dtype} of shape {shape}, config needs"
                f" {own[k][1]} of shape {own[k][0]}"
            )
