"""Which rows are evaluated: a training run's split, the held-out group sets and the row sample.

Rows are rows of a dataset index (one per residue, :func:`holoprot.training.dataset.load_dataset`).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from holoprot.errors import InputError

#: Sets of the groups file whose test groups were held out for the first default weights
#: (``hae-z128-bm5``); their test rows are the ``old_test_groups`` subset.
OLD_SETS = ("bm5", "extra")


def read_split(path: str | os.PathLike) -> dict[str, str]:
    """``split.csv`` of a training run → {source_path: train/val/test}."""
    with open(path, newline="") as fh:
        return {row["source_path"]: row["split"] for row in csv.DictReader(fh)}


def read_group_sets(path: str | os.PathLike) -> dict[str, str] | None:
    """Groups file → {structure_id: set} (``bm5``, ``extra``, ``posebusters``, …), or None when
    the file has no ``set`` column (the older ``structure_id,group`` files)."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "structure_id" not in fields:
                raise InputError(path, "groups file needs a structure_id column")
            if "set" not in fields:
                return None
            return {row["structure_id"]: row["set"] for row in reader}
    except OSError as exc:
        raise InputError(path, f"cannot read groups file ({exc.strerror})") from exc


def subset_masks(structure_ids: np.ndarray, sets: dict[str, str] | None) -> dict[str, np.ndarray]:
    """Boolean masks over rows: ``all``; with `sets`, also ``old_test_groups`` (sets in
    :data:`OLD_SETS`: the groups held out for the first default weights), ``new_test_groups``
    (every other set) and, if any row's structure is not in `sets`, ``unlisted``."""
    ids = np.asarray(structure_ids, dtype=object)
    masks = {"all": np.ones(len(ids), dtype=bool)}
    if sets is None:
        return masks
    listed = np.array([s in sets for s in ids], dtype=bool)
    old = np.array([sets.get(s) in OLD_SETS for s in ids], dtype=bool)
    masks["old_test_groups"] = old
    masks["new_test_groups"] = listed & ~old
    if not listed.all():
        masks["unlisted"] = ~listed
    return masks


def sample_rows_by_file(
    rng: np.random.Generator, rows: np.ndarray, files: np.ndarray, limit: int | None
) -> np.ndarray:
    """At most `limit` of `rows` (sorted), from whole files taken in a seeded random order until
    they hold `limit` rows, then subsampled to exactly `limit`: few files, so DSSP runs on only
    those. `files` (N,) is the file of every row of the dataset."""
    rows = np.asarray(rows)
    if limit is None or len(rows) <= limit:
        return rows
    names, inverse = np.unique(np.asarray(files, dtype=str)[rows], return_inverse=True)
    order = rng.permutation(len(names))
    counts = np.bincount(inverse, minlength=len(names))[order]
    n_files = int(np.searchsorted(np.cumsum(counts), limit)) + 1
    chosen = rows[np.isin(inverse, order[:n_files])]
    return np.sort(rng.choice(chosen, limit, replace=False))


__all__ = ["OLD_SETS", "read_group_sets", "read_split", "sample_rows_by_file", "subset_masks"]
