"""The residue-type probe on a public slice: structure files shipped with the repository, so that
a test can recompute the recorded figure without the training data (:func:`slice_probe`).
"""

from __future__ import annotations

import os
from pathlib import Path

from holoprot.embedding.embedder import Embedder
from holoprot.errors import HoloprotError
from holoprot.evaluation.features import latents_of_files
from holoprot.evaluation.probes import residue_type_probe

_REPO = Path(__file__).resolve().parents[2]

#: The public slice (paths relative to the repository root): the probe is trained on the residues
#: of the test-data structures and scored on those of the examples, so train and test residues
#: come from different proteins. The 6,608-residue unit cell 3kpr is left out to keep it fast.
#: Fixed lists, not globs: a new file in these folders must not change a recorded result.
SLICE_TRAIN = (
    "tests/data/structures/19hc.pdb.gz",
    "tests/data/structures/1a8o.pdb",
    "tests/data/structures/1gbt.cif",
    "tests/data/structures/1lcd_nmr.cif.gz",
)
SLICE_TEST = (
    "examples/structures/1a28.pdb.gz",
    "examples/structures/1hvr.pdb",
    "examples/structures/4zhl.cif",
)


def slice_probe(embedder: Embedder, seed: int = 0, root: str | os.PathLike = _REPO) -> dict:
    """:func:`residue_type_probe` on the public slice (:data:`SLICE_TRAIN` → :data:`SLICE_TEST`,
    paths under `root`, the repository checkout), so that it can be recomputed without the
    training data. Also returns the file lists."""
    root = Path(root)
    missing = [p for p in (*SLICE_TRAIN, *SLICE_TEST) if not (root / p).is_file()]
    if missing:
        raise HoloprotError(f"slice files not found under {root}: {missing}")
    train = latents_of_files(embedder, [root / p for p in SLICE_TRAIN])
    test = latents_of_files(embedder, [root / p for p in SLICE_TEST])
    result = residue_type_probe(*train, *test, seed=seed)
    return {**result, "train_files": list(SLICE_TRAIN), "test_files": list(SLICE_TEST)}


__all__ = ["SLICE_TEST", "SLICE_TRAIN", "slice_probe"]
