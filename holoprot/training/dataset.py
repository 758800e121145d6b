"""Training data: Zernike coefficients of every residue, computed once and cached on disk.

A cache folder holds ``shard-NNNNN.npy`` files of float32 coefficients (rows, dim), read back
memory-mapped, ``index.parquet`` with one identity row per residue (plus ``group``, ``shard`` and
``row``), and ``manifest.json`` describing the inputs (path, size, mtime), the basis and the
radius. A later run with the same inputs and settings reuses the cache without parsing anything;
any difference rebuilds it. Every file is written under a temporary name (`_util.atomic`) and
renamed, and the manifest is written last, so a killed build is never mistaken for a finished
one. The manifest records the index's sha256 and is sealed (`_util.hashing.seal`): an edited
manifest or index is rebuilt when the cache is reused, and refused by `load_dataset`. Shard file
names are made from the manifest's shard count, never read from a file, and every shard row the
index points to must exist.

Splits are by group — by default the structure id, or a user mapping so that near-duplicates
(bound and unbound copies of one complex) never straddle train / validation / test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from holoprot._util.atomic import atomic_path, write_json_atomic
from holoprot._util.hashing import SEAL_KEY, check_seal, json_sha256, seal, sha256_file
from holoprot.errors import HoloprotError, InputError
from holoprot.zernike.pipeline import FailedInput, ProjectionSettings, iter_projected

SHARD_ROWS = 16384
SPLITS = ("train", "val", "test")


def _fingerprint(paths: Sequence[str], settings: ProjectionSettings) -> str:
    digest = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        digest.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest.update(json.dumps(_settings_dict(settings), sort_keys=True).encode())
    return digest.hexdigest()


def _settings_dict(settings: ProjectionSettings) -> dict[str, object]:
    return {"basis": settings.basis.metadata(), "radius": settings.radius, "model": settings.model}


@dataclass
class CoefficientDataset:
    """Cached coefficients with their identity rows.

    Attributes:
        index: one row per residue: identity columns, ``group``, ``shard``, ``row``.
        shards: memory-mapped (rows, dim) float32 arrays.
        manifest: what the cache was built from.
    """

    index: pa.Table
    shards: list[np.ndarray]
    manifest: dict

    def __len__(self) -> int:
        return self.index.num_rows

    @property
    def dim(self) -> int:
        return int(self.manifest["settings"]["basis"]["dim"])

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Coefficients of the given residue indices, (len(indices), dim) float32, in that order."""
        shard = self._shard[indices]
        row = self._row[indices]
        out = np.empty((len(indices), self.dim), dtype=np.float32)
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            order = np.argsort(row[sel])
            out[sel[order]] = self.shards[s][row[sel][order]]
        return out

    def __post_init__(self) -> None:
        self._shard = self.index.column("shard").to_numpy()
        self._row = self.index.column("row").to_numpy()


def build_dataset(
    paths: Sequence[str],
    cache_dir: str | os.PathLike,
    settings: ProjectionSettings,
    *,
    workers: int | None = None,
    on_file: Callable[[int], None] | None = None,
) -> tuple[CoefficientDataset, list[str]]:
    """Project every file into `cache_dir` (or reuse an identical cache there).

    Files that fail are skipped and their messages returned. Raises HoloprotError when no file
    gives any residue.
    """
    cache = Path(cache_dir)
    fingerprint = _fingerprint(paths, settings)
    manifest_path = cache / "manifest.json"
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        if (
            manifest.get("fingerprint") == fingerprint
            and manifest.get(SEAL_KEY) == json_sha256(manifest)
            and _index_intact(cache, manifest)
        ):
            return load_dataset(cache), manifest.get("failures", [])
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)
    for old in cache.glob("shard-*.npy"):
        old.unlink()
    identity: list[pa.Table] = []
    buffer: list[np.ndarray] = []
    buffered = n_shards = 0
    failures: list[str] = []

    def flush() -> None:
        nonlocal buffer, buffered, n_shards
        if buffered:
            _save_npy(cache / f"shard-{n_shards:05d}.npy", np.concatenate(buffer))
            n_shards += 1
            buffer, buffered = [], 0

    for item in iter_projected(paths, settings, workers=workers):
        if on_file is not None:
            on_file(1)
        if isinstance(item, FailedInput):
            failures.append(item.message)
            continue
        n = len(item.coefficients)
        identity.append(
            item.identity.append_column(
                "shard", pa.array(np.full(n, n_shards, np.int32))
            ).append_column("row", pa.array(np.arange(buffered, buffered + n, dtype=np.int64)))
        )
        buffer.append(item.coefficients)
        buffered += n
        if buffered >= SHARD_ROWS:
            flush()
    flush()
    if not identity:
        raise HoloprotError(f"no residues in any of the {len(paths)} input file(s)")
    with atomic_path(cache / "index.parquet") as tmp:
        pq.write_table(pa.concat_tables(identity), tmp)
    manifest = {
        "fingerprint": fingerprint,
        "settings": _settings_dict(settings),
        "n_files": len(paths),
        "n_residues": sum(t.num_rows for t in identity),
        "n_shards": n_shards,
        "index_sha256": sha256_file(cache / "index.parquet"),
        "failures": failures,
    }
    write_json_atomic(manifest_path, seal(manifest))
    return load_dataset(cache), failures


def load_dataset(cache_dir: str | os.PathLike) -> CoefficientDataset:
    """Open a finished cache folder (memory-mapped)."""
    cache = Path(cache_dir)
    manifest_path = cache / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(cache, "not a finished holoprot dataset cache (no manifest.json)")
    manifest = _read_manifest(manifest_path)
    check_seal(manifest, manifest_path)
    if not _index_intact(cache, manifest):
        raise InputError(cache / "index.parquet", "sha256 does not match manifest.json")
    n_shards = manifest.get("n_shards")
    if not isinstance(n_shards, int) or isinstance(n_shards, bool) or n_shards < 0:
        raise InputError(manifest_path, f"n_shards {n_shards!r} is not a shard count")
    shards = []
    for i in range(n_shards):  # names made here, not read from a file
        path = cache / f"shard-{i:05d}.npy"
        try:
            shards.append(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot read the shard ({exc})") from None
    index = pq.read_table(cache / "index.parquet")
    shard, row = index.column("shard").to_numpy(), index.column("row").to_numpy()
    sizes = np.array([len(s) for s in shards], dtype=np.int64)
    if len(index) and (
        shard.min() < 0 or shard.max() >= n_shards or row.min() < 0 or (row >= sizes[shard]).any()
    ):
        raise InputError(cache / "index.parquet", "points to rows the shards do not hold")
    return CoefficientDataset(index, shards, manifest)


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable dataset manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise InputError(path, "not a holoprot dataset manifest")
    return manifest


def _index_intact(cache: Path, manifest: dict) -> bool:
    index = cache / "index.parquet"
    return index.is_file() and sha256_file(index) == manifest.get("index_sha256")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def read_group_file(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """CSV with columns ``structure_id,group`` and optionally ``split`` → (structure → group,
    group → pinned split). Other columns are ignored; an empty ``split`` cell pins nothing.

    A pinned split keeps a group in train, val or test whatever else is added to the corpus (e.g.
    the test groups of earlier weights stay held out when new structures arrive).
    """
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"structure_id", "group"} <= set(reader.fieldnames):
                raise InputError(path, "group file needs the columns structure_id,group")
            rows = list(reader)
    except OSError as exc:
        raise InputError(path, f"cannot read group file ({exc.strerror})") from exc
    mapping = {row["structure_id"]: row["group"] for row in rows}
    pinned: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip()
        if not split:
            continue
        if split not in SPLITS:
            raise InputError(
                path, f"line {line}: split {split!r} is not one of {', '.join(SPLITS)}"
            )
        if pinned.setdefault(row["group"], split) != split:
            raise InputError(path, f"line {line}: group {row['group']!r} pinned to two splits")
    return mapping, pinned


def assign_groups(
    structure_ids: Sequence[str],
    *,
    mapping: dict[str, str] | None = None,
    pattern: str | None = None,
) -> np.ndarray:
    """Group of each structure: `mapping[id]`, else the first capture (or whole match) of the
    regular expression `pattern` in the id, else the id itself."""
    regex = re.compile(pattern) if pattern else None
    out = []
    for sid in structure_ids:
        if mapping and sid in mapping:
            out.append(mapping[sid])
            continue
        m = regex.search(sid) if regex else None
        out.append((m.group(1) if m.groups() else m.group(0)) if m else sid)
    return np.array(out, dtype=object)


def split_groups(
    groups: np.ndarray,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    pinned: dict[str, str] | None = None,
) -> np.ndarray:
    """Assign each row to 'train', 'val' or 'test' by its group (seeded shuffle of the groups,
    filled in order until each split holds about its fraction of the rows).

    Groups in `pinned` (group → split) keep their split; the others are shuffled and split among
    themselves by `fractions`, as if the pinned groups were absent.

    Raises HoloprotError if there are fewer groups than non-empty splits requested.
    """
    groups = groups.astype(str)
    label = np.empty(len(groups), dtype=object)
    fixed = np.isin(groups, list(pinned)) if pinned else np.zeros(len(groups), dtype=bool)
    for i in np.flatnonzero(fixed):
        label[i] = pinned[groups[i]]
    if fixed.all():
        return label
    label[~fixed] = _split_free_groups(groups[~fixed], fractions, seed)
    return label


def _split_free_groups(
    groups: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> np.ndarray:
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    wanted = [name for name, f in zip(SPLITS, fractions, strict=True) if f > 0]
    if len(uniq) < len(wanted):
        raise HoloprotError(
            f"only {len(uniq)} structure group(s): need at least {len(wanted)} to split into"
            f" {'/'.join(wanted)} (add structures or change --split)"
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    midpoints = np.cumsum(counts[order]) - counts[order] / 2
    bounds = np.cumsum(np.asarray(fractions, dtype=float))[:-1] / np.sum(fractions) * counts.sum()
    split = np.searchsorted(bounds, midpoints, side="right")
    for s, name in enumerate(SPLITS):  # every requested split gets at least one group
        if name in wanted and not np.any(split == s):
            donor = np.bincount(split, minlength=3).argmax()
            split[np.flatnonzero(split == donor)[-1 if s > donor else 0]] = s
    label = np.empty(len(uniq), dtype=object)
    label[order] = np.array(SPLITS, dtype=object)[split]
    return label[inverse]
