"""A model's two files read without torch: the sealed description (``<stem>.json``: format,
config, metadata, checksums) checked against the tensors of ``<stem>.safetensors``.

Layout (written by :func:`holoprot.model.serialization.save_model`)::

    {"format": "holoprot-hvae", "format_version": 1, "holoprot_version": "...",
     "config": HVAEConfig.to_dict(), "metadata": {...}, "sha256": "<hex of the .safetensors>",
     "metadata_sha256": "<hex of the other fields>"}

The JSON is sealed (:func:`holoprot._util.hashing.seal`): editing any field is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from holoprot._util.hashing import check_seal, sha256_file
from holoprot.errors import HoloprotError
from holoprot.model.config import HVAEConfig, state_shapes
from holoprot.model.weights import model_files

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFiles", "load_state_arrays", "read_model_files"]

FORMAT = "holoprot-hvae"
FORMAT_VERSION = 1
#: A model description is a few kB; refuse to parse anything far larger.
MAX_DESCRIPTION_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelFiles:
    """A checked model: its ``.safetensors`` path, the description's fields (``info``) and the
    architecture they describe."""

    weights: Path
    info: dict[str, Any]
    config: HVAEConfig

    @property
    def metadata(self) -> dict[str, Any]:
        return self.info.get("metadata", {})


def read_model_files(path: str | Path) -> ModelFiles:
    """Check a model's files (``path``: the ``.safetensors``, the ``.json`` or the stem): both
    present, the description sealed and of this format, the tensors' checksum, the config valid,
    and every tensor (name, shape, dtype, read from the safetensors header: no tensor is loaded)
    exactly those of the config. Raises :class:`~holoprot.errors.HoloprotError` naming the
    file and the problem."""
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
        expected = state_shapes(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise HoloprotError(f"{sidecar}: invalid model config ({exc})") from exc
    _check_tensor_shapes(weights, expected)
    return ModelFiles(weights, info, config)


def load_state_arrays(weights: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as NumPy arrays (check the file first with
    :func:`read_model_files`)."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc


def _check_tensor_shapes(weights: Path, expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Refuse weights whose tensors are not exactly `expected` (``{name: (shape, dtype)}``,
    :func:`~holoprot.model.config.state_shapes`), reading the file's tensor names and shapes
    from its safetensors header. So a description asking for huge layers is refused before
    they are allocated, unless the file really holds tensors of that size."""
    try:
        with safe_open(str(weights), framework="numpy") as f:
            stored = {
                k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                for k in f.keys()  # noqa: SIM118
            }
    except (SafetensorError, OSError) as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise HoloprotError(
            f"{weights}: tensors do not match the config"
            f" (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, (shape, dtype) in stored.items():
        if (shape, dtype) != expected[k]:
            raise HoloprotError(
                f"{weights}: tensor {k} is {dtype} of shape {shape}, config needs"
                f" {expected[k][1]} of shape {expected[k][0]}"
            )
