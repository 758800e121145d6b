"""holoprot: Holographic-(V)AE embeddings of protein residue microenvironments.

The notebook API (imported lazily, so `import holoprot` stays fast):

* `holoprot.embed(paths, weights="default", ...)` → pandas.DataFrame, one row per residue
* `holoprot.embed_table(...)` → the same as a pyarrow.Table
* `holoprot.load_model(name_or_path)` → (HVAE model, info)
* `holoprot.embed_dataset(paths, out_dir, ...)` → a Parquet dataset written on a Ray cluster
* `holoprot.Embedder`, `holoprot.read_structure`, `holoprot.extract_neighborhoods`,
  `holoprot.ZernikeBasis`
* `holoprot.Index` → nearest-neighbour search over residue latents (build/search/save/load)
* `holoprot.HoloprotError` (every refused input, option or file; `InputError` names the file)
* `holoprot.tune_malloc()` → let glibc keep freed memory for the next batch (what the command does)

The package reads as the pipeline: `io` (files → atoms; tables out) → `zernike` (→ coefficients)
→ `model` → `embedding` (→ latents), then `training`, `search`, `affinity`, `evaluation`, and
`cli` over all of them; `_util` is plumbing.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the one place: pyproject.toml reads it

_LAZY = {
    "embed": "holoprot.embedding.embedder",
    "embed_table": "holoprot.embedding.embedder",
    "load_model": "holoprot.embedding.embedder",
    "Embedder": "holoprot.embedding.embedder",
    "embed_dataset": "holoprot.embedding.distributed",
    "read_structure": "holoprot.io.structure",
    "extract_neighborhoods": "holoprot.zernike.neighborhoods",
    "ZernikeBasis": "holoprot.zernike.basis",
    "Index": "holoprot.search",
    "HoloprotError": "holoprot.errors",
    "InputError": "holoprot.errors",
    "tune_malloc": "holoprot._util.allocator",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'holoprot' has no attribute {name!r}")
