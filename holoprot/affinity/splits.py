"""Train / validation / test splits of complex ids.

Sources: ATOM3D-style id lists (a folder with train/val/test files), a `split` column, a held-out id
list (e.g. the CASF core set) as test, or a seeded random or k-fold split. Validation, when the
source gives none, is a seeded random fraction carved from training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from holoprot.errors import InputError

PARTS = ("train", "val", "test")
_PART_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class Split:
    """Disjoint sorted id lists; `method` says how they were made (recorded in model metadata)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    method: str
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for part in PARTS:
            ids = set(getattr(self, part))
            overlap = seen & ids
            if overlap:
                raise InputError(
                    part, f"ids in more than one split part: {', '.join(sorted(overlap)[:5])}"
                )
            seen |= ids

    def part_of(self) -> dict[str, str]:
        """Map id → 'train' | 'val' | 'test'."""
        return {i: part for part in PARTS for i in getattr(self, part)}

    def to_json(self) -> dict[str, object]:
        return {"method": self.method, "notes": list(self.notes)} | {
            part: list(getattr(self, part)) for part in PARTS
        }


def _make(
    ids: Iterable[str],
    parts: Mapping[str, Iterable[str]],
    method: str,
    val_fraction: float,
    seed: int,
    notes: Sequence[str] = (),
) -> Split:
    """Restrict `parts` to `ids`, carving validation from train if there is none."""
    known = set(ids)
    notes = list(notes)
    chosen = {part: sorted(set(parts.get(part, ())) & known) for part in PARTS}
    listed = set().union(*(set(parts.get(part, ())) for part in PARTS))
    if listed - known:
        notes.append(f"{len(listed - known)} listed ids are not among the usable complexes")
    unlisted = known - listed
    if unlisted:
        notes.append(f"{len(unlisted)} usable complexes are in no split part and are not used")
    if not chosen["val"]:
        chosen["train"], chosen["val"] = carve(chosen["train"], val_fraction, seed)
        method += f"; validation = {val_fraction:g} of train (seed {seed})"
    if not chosen["train"]:
        raise InputError(method, "the split leaves no training complexes")
    return Split(*(tuple(chosen[part]) for part in PARTS), method=method, notes=tuple(notes))


def carve(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded random (rest, carved) partition of `ids`: at least 1 carved when 2 or more ids."""
    ids = sorted(ids)
    if len(ids) < 2 or fraction <= 0.0:
        return ids, []
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    order = np.random.default_rng(seed).permutation(len(ids))
    carved = {ids[i] for i in order[:count]}
    return [i for i in ids if i not in carved], sorted(carved)


def read_id_list(path: str | Path) -> list[str]:
    """Ids, one per line (or comma/space separated); `#` comments and blank lines skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(path, f"cannot read id list ({exc.strerror or exc})") from exc
    ids = [
        token.lower()
        for line in text.splitlines()
        for token in line.split("#", 1)[0].replace(",", " ").split()
    ]
    if ids and all(token.isdigit() for token in ids):
        raise InputError(path, "holds integer indices, not complex ids (one id per line expected)")
    return ids


def from_split_dir(
    ids: Iterable[str], split_dir: str | Path, *, val_fraction: float = 0.1, seed: int = 0
) -> Split:
    """ATOM3D-style lists: `train`, `val`, `test` files (`.txt`, `_ids.txt` or none) in a folder."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise InputError(split_dir, "split folder not found")
    parts: dict[str, list[str]] = {}
    for path in sorted(split_dir.iterdir()):
        stem = path.name.split(".")[0].lower()
        for suffix in ("_ids", "_indices", "_set"):
            stem = stem.removesuffix(suffix)
        part = _PART_ALIASES.get(stem)
        if part is not None and path.is_file():
            if part in parts:
                raise InputError(path, f"second {part} list in the split folder")
            parts[part] = read_id_list(path)
    for part in ("train", "test"):
        if part not in parts:
            raise InputError(split_dir, f"no {part} list (expected e.g. {part}.txt)")
    return _make(ids, parts, f"id lists from {split_dir.name}/", val_fraction, seed)


def from_column(
    assignments: Mapping[str, str], *, val_fraction: float = 0.1, seed: int = 0
) -> Split:
    """A `split` column: id → train/val/test (aliases: training, valid, validation, testing)."""
    parts: dict[str, list[str]] = {part: [] for part in PARTS}
    for complex_id, value in assignments.items():
        part = _PART_ALIASES.get(str(value).strip().lower())
        if part is None:
            raise InputError("split column", f"unknown split {value!r} for {complex_id}")
        parts[part].append(complex_id)
    return _make(assignments.keys(), parts, "split column", val_fraction, seed)


def held_out(
    ids: Iterable[str],
    test_ids: Iterable[str],
    *,
    method: str = "held-out id list",
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """`test_ids` (those present) as test, the rest as train with validation carved from it."""
    ids = sorted(set(ids))
    test = set(test_ids)
    parts = {"train": [i for i in ids if i not in test], "test": sorted(test)}
    return _make(ids, parts, method, val_fraction, seed)


def random_split(
    ids: Iterable[str], *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """Seeded random train/val/test split by `fractions`; val and test get ≥ 1 id when n ≥ 3."""
    ids = sorted(set(ids))
    rest, test = carve(ids, fractions[2], seed)
    train, val = carve(rest, fractions[1] / (fractions[0] + fractions[1]), seed + 1)
    return _make(
        ids,
        {"train": train, "val": val, "test": test},
        f"random {fractions[0]:g}/{fractions[1]:g}/{fractions[2]:g} (seed {seed})",
        fractions[1],
        seed,
    )


def kfold_splits(
    ids: Iterable[str], k: int = 5, *, val_fraction: float = 0.1, seed: int = 0
) -> list[Split]:
    """Seeded k-fold: fold i tests on the i-th of k near-equal random parts, trains on the rest."""
    ids = sorted(set(ids))
    if k < 2 or k > len(ids):
        raise InputError("--k-folds", f"needs 2 <= k <= {len(ids)} complexes, got {k}")
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, k)
    splits = []
    for fold, rows in enumerate(folds):
        test = {ids[i] for i in rows}
        train = [i for i in ids if i not in test]
        splits.append(
            _make(
                ids,
                {"train": train, "test": test},
                f"{k}-fold (seed {seed}), fold {fold + 1}",
                val_fraction,
                seed + fold,
            )
        )
    return splits
