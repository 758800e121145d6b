"""A model's two files read without torch: the sealed description (``<stem>.json``: format,
config, metadata, checksums) checked against the tensors of ``<stem>.safetensors``.

Layout (written by :func:`holoprot.model.serialization.save_model`)::

    {"format": "holoprot-hvae", "format_version": 1, "holoprot_version": "...",
     "config": HVAEConfig.to_dict(), "metadata": {...}, "sha256": "<hex of the .safetensors>",
     "tensor_dtype": "F16", "metadata_sha256": "<hex of the other fields>"}

The JSON is sealed (:func:`holoprot._util.hashing.seal`): editing any field is refused.
``tensor_dtype`` (optional, ``F32`` when absent) is the safetensors dtype every tensor is stored
in: ``F32``, or ``F16`` for a half-size copy (a weight rounded by at most 2^-11 of its size).
The model computes in float32 either way: :func:`load_state_arrays` and the torch loader widen
``F16`` tensors on loading.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError

from holoprot._util.hashing import check_seal
from holoprot.errors import HoloprotError
from holoprot.model.config import HVAEConfig, state_shapes
from holoprot.model.weights import model_files

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TENSOR_DTYPES",
    "ModelFiles",
    "load_state_arrays",
    "read_model_files",
]

FORMAT = "holoprot-hvae"
FORMAT_VERSION = 1
#: The safetensors dtypes a weights file may store its tensors in (``tensor_dtype``).
TENSOR_DTYPES = ("F32", "F16")
#: A model description is a few kB; refuse to parse anything far larger.
MAX_DESCRIPTION_BYTES = 1 << 20
#: A weights file's safetensors header (tensor names, shapes, offsets) is a few kB too.
MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelFiles:
    """A checked model: its ``.safetensors`` path, the description's fields (``info``), the
    architecture they describe, and the weights file's bytes (read once: the tensors parsed from
    them are the ones checked, even if the file is replaced afterwards)."""

    weights: Path
    info: dict[str, Any]
    config: HVAEConfig
    data: bytes = field(repr=False)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.info.get("metadata", {})


def read_model_files(path: str | Path) -> ModelFiles:
    """Check a model's files (``path``: the ``.safetensors``, the ``.json`` or the stem): both
    present, the description sealed and of this format, the config valid, the weights file no
    larger than its config's tensors and a header, its checksum, and every tensor (name, shape,
    dtype, from the safetensors header: none is parsed yet) exactly those of the config, in the
    description's ``tensor_dtype``. The
    file is read once; its bytes come back in ``data``. Raises
    :class:`~holoprot.errors.HoloprotError` naming the file and the problem."""
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
    dtype = info.get("tensor_dtype", "F32")
    if dtype not in TENSOR_DTYPES:
        raise HoloprotError(
            f"{sidecar}: tensor_dtype {dtype!r} is none of {', '.join(TENSOR_DTYPES)}"
        )
    try:
        config = HVAEConfig.from_dict(info["config"])
        expected = {k: (shape, dtype) for k, (shape, _) in state_shapes(config).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise HoloprotError(f"{sidecar}: invalid model config ({exc})") from exc
    size, most = weights.stat().st_size, 8 + MAX_HEADER_BYTES + _file_bytes(expected)
    if size > most:
        raise HoloprotError(
            f"{weights}: {size} bytes, more than the tensors of its config take ({most} at most)"
        )
    try:
        data = weights.read_bytes()
    except OSError as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise HoloprotError(
            f"{weights}: sha256 does not match {sidecar.name} (file changed or corrupt)"
        )
    _check_tensor_shapes(weights, _header(weights, data), expected)
    return ModelFiles(weights, info, config, data)


def load_state_arrays(files: ModelFiles) -> dict[str, np.ndarray]:
    """The tensors of a checked model (:func:`read_model_files`) as float32 NumPy arrays."""
    from safetensors.numpy import load

    try:
        state = load(files.data)
    except SafetensorError as exc:
        raise HoloprotError(f"{files.weights}: unreadable safetensors file ({exc})") from exc
    return {k: v.astype(np.float32, copy=False) for k, v in state.items()}


def _file_bytes(expected: dict[str, tuple[tuple[int, ...], str]]) -> int:
    """Bytes of the tensors `expected` at most (4 bytes an entry, float32's) without the header."""
    return sum(4 * math.prod(shape) for shape, _ in expected.values())


def _header(weights: Path, data: bytes) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` from a safetensors file's header: an 8-byte little-endian
    length, then that many bytes of JSON (``__metadata__`` left out)."""
    try:
        length = int.from_bytes(data[:8], "little")
        if len(data) < 8 or length > min(MAX_HEADER_BYTES, len(data) - 8):
            raise ValueError("header length out of range")
        header = json.loads(data[8 : 8 + length])
        return {
            k: (tuple(int(n) for n in v["shape"]), str(v["dtype"]))
            for k, v in header.items()
            if k != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise HoloprotError(f"{weights}: unreadable safetensors file ({exc})") from exc


def _check_tensor_shapes(
    weights: Path,
    stored: dict[str, tuple[tuple[int, ...], str]],
    expected: dict[str, tuple[tuple[int, ...], str]],
) -> None:
    """Refuse weights whose tensors (`stored`, from the file's header) are not exactly `expected`
    (:func:`~holoprot.model.config.state_shapes`), before any tensor is parsed."""
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
