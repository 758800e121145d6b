"""Finding model weights by name or path. Nothing is ever downloaded.

A name (``default``, or e.g. ``hae-z128-bm5``) is looked up as ``<dir>/<name>.safetensors`` +
``<dir>/<name>.json`` in, in order: the folders listed in ``$HOLOPROT_WEIGHTS_PATH`` (``:``
separated) and :data:`PACKAGE_WEIGHTS`, the package data folder the wheel carries. Anything
containing a path separator or ending in ``.safetensors``/``.json`` is taken as a path. The model
cards and training records stay in the source tree's top-level ``weights/`` folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from holoprot.errors import HoloprotError

#: The weights `--weights default` refers to.
DEFAULT_WEIGHTS = "hae-z128-bm5"

#: Where the shipped weights live: package data, installed with holoprot.
PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights_data"


def model_files(path: str | Path) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` for a model's ``.safetensors``, ``.json`` or stem.

    The suffixes are appended to the stem, not swapped for its last suffix, so a stem with a dot
    (``weights/v1.2``) keeps it.
    """
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def weights_dirs() -> list[Path]:
    """Folders searched for named weights, in order."""
    extra = [Path(p) for p in os.environ.get("HOLOPROT_WEIGHTS_PATH", "").split(os.pathsep) if p]
    return [*extra, PACKAGE_WEIGHTS]


def available_weights() -> list[str]:
    """Names of the weights found in the search folders."""
    names = []
    for d in weights_dirs():
        for f in sorted(d.glob("*.safetensors")):
            if model_files(f)[1].is_file() and f.stem not in names:
                names.append(f.stem)
    return names


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """The weights stem (path without suffix) for a name or a path.

    Raises:
        HoloprotError: no such weights; the message lists the names available.
    """
    text = str(name_or_path)
    if text == "default":
        text = DEFAULT_WEIGHTS
    is_path = os.sep in text or text.endswith((".safetensors", ".json")) or Path(text).exists()
    if is_path:
        path = Path(text)
        if path.suffix not in (".safetensors", ".json") and path.exists():
            raise HoloprotError(
                f"{text}: not a weights file (expected a .safetensors file with its .json beside"
                " it, or a weights name)"
            )
        weights = model_files(path)[0]
        if not weights.is_file():
            raise HoloprotError(f"{weights}: weights file not found")
        return weights.with_suffix("")
    for d in weights_dirs():
        if (d / f"{text}.safetensors").is_file():
            return d / text
    known = ", ".join(available_weights()) or "none"
    raise HoloprotError(f"weights {text!r} not found (available: {known})")


@dataclass(frozen=True)
class WeightsInfo:
    """One set of named weights: its sha256 (of the .safetensors file, as recorded in the JSON),
    latent size and the stem (path without suffix) it was found at."""

    name: str
    sha256: str
    latent_dim: int
    path: Path


def list_weights() -> list[WeightsInfo]:
    """The named weights found in the search folders, first occurrence of each name.

    Raises:
        HoloprotError: a weights JSON that cannot be read.
    """
    found = []
    for name in available_weights():
        stem = resolve_weights(name)
        sidecar = model_files(stem)[1]
        try:
            info = json.loads(sidecar.read_text())
            found.append(WeightsInfo(name, info["sha256"], int(info["config"]["latent_dim"]), stem))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HoloprotError(f"{sidecar}: not a holoprot weights file ({exc})") from exc
    return found
