"""A compact, self-contained training pack: the atoms that rebuild every residue neighbourhood.

A pack lets a machine without the structure files (or without gemmi) recompute the training
coefficients, e.g. on a GPU. It is a folder of three Parquet files and a JSON file, no pickle:

* ``atoms.parquet``: per structure, in file order, only the atoms that enter a Zernike channel
  (C, N, O, S by default): ``x``, ``y``, ``z`` int32 fixed point in units of
  ``COORDINATE_STEP`` (0.001 Å, delta-encoded and zstd-compressed by Parquet) and ``channel``
  int8 (index into the basis channels). Atoms of other elements are left out: they enter no
  channel, so no coefficient depends on them.
* ``residues.parquet``: one row per neighbourhood, in the order of ``holoprot train``'s dataset
  (structure order, then residue-table order): ``structure`` (row of structures.parquet),
  ``centre`` (the Cα's atom row within its structure), and the identity columns ``chain``,
  ``residue_number``, ``insertion_code``, ``residue_name``, ``nonstandard``, ``atom_count``
  (all atoms within the radius in the original structure, as ``holoprot embed`` reports it).
* ``structures.parquet``: ``structure_id``, ``source_path``, ``model``, ``group``, ``split``,
  ``n_atoms``, ``n_residues``, ``max_error`` (largest coordinate rounding, Å).
* ``pack.json``: format, step, radius, basis, counts, ``max_coordinate_error`` and failures.

Error bound: each coordinate is rounded to the nearest 0.001 Å, so it moves by at most
0.0005 Å. Coordinates written with at most three decimals (every PDB file; mmCIF files from the
PDB) are read back as the very float64 values the parser gave (k / 1000 is the correctly rounded
double nearest to the decimal, as the parser's), so neighbourhoods and coefficients projected from
the pack equal those projected from the file bit for bit on the same backend; ``max_error`` is
then 0. For other files it is the largest rounding of any coordinate; an atom within that distance
of the 10 Å boundary may then change sides.

Splits are fixed when the pack is built (group file with pinned splits, then the seeded group
split of `holoprot train`), so a run from the pack trains on the same split as `holoprot train`
with the same options.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from holoprot import __version__
from holoprot._util.atomic import atomic_path, write_json_atomic
from holoprot._util.devices import use_numba
from holoprot.errors import HoloprotError, InputError
from holoprot.io.tables import IDENTITY_SCHEMA
from holoprot.training.dataset import (
    CoefficientDataset,
    assign_groups,
    read_group_file,
    split_groups,
)
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import MIN_DISTANCE, Neighborhoods, neighborhoods_around
from holoprot.zernike.pipeline import ProjectionSettings, default_workers

FORMAT = "holoprot-training-pack"
VERSION = 1
#: Fixed-point unit of the stored coordinates, Å.
COORDINATE_STEP = 0.001
_SCALE = 1000.0
_RESIDUE_COLUMNS = (
    "chain",
    "residue_number",
    "insertion_code",
    "residue_name",
    "nonstandard",
    "atom_count",
)


# ---- building ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PackedFile:
    source: str
    structure_id: str
    model: int
    xyz: np.ndarray  # (N, 3) int32
    channel: np.ndarray  # (N,) int8
    residues: dict[str, np.ndarray]  # centre + identity columns, one entry per neighbourhood
    max_error: float


def _pack_file(path: str, settings: ProjectionSettings) -> _PackedFile | str:
    """One structure → its channel atoms and neighbourhood rows, or an error message."""
    from holoprot.io.structure import read_structure
    from holoprot.zernike.neighborhoods import centre_atoms

    try:
        s = read_structure(path, model=settings.model)
    except HoloprotError as exc:
        return str(exc)
    res_idx, ca_idx, _ = centre_atoms(s, chains=settings.chains)
    if len(res_idx) == 0:
        return f"{path}: no amino-acid residue with a Cα atom"
    nbh = neighborhoods_around(
        np.asarray(s.coords, dtype=np.float64), s.element, res_idx, ca_idx, settings.radius
    )
    channel = settings.basis.channel_index(s.element)
    keep = channel >= 0
    new_row = np.cumsum(keep) - 1
    fixed = np.rint(s.coords[keep] * _SCALE)
    if np.abs(fixed).max(initial=0) >= 2**31:
        return f"{path}: coordinates beyond ±2,147 km do not fit the pack"
    error = float(np.abs(fixed / _SCALE - s.coords[keep]).max(initial=0.0))
    residues = {
        "centre": new_row[ca_idx].astype(np.int32),
        "chain": s.chain[res_idx].astype(str),
        "residue_number": s.seq_num[res_idx].astype(np.int32),
        "insertion_code": s.icode[res_idx].astype(str),
        "residue_name": s.res_name[res_idx].astype(str),
        "nonstandard": ~s.is_standard[res_idx],
        "atom_count": nbh.n_atoms.astype(np.int32),
    }
    return _PackedFile(
        str(path), s.id, s.model, fixed.astype(np.int32), channel[keep].astype(np.int8), residues,
        error,
    )  # fmt: skip


def build_pack(
    paths: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    settings: ProjectionSettings | None = None,
    group_file: str | os.PathLike | None = None,
    group_pattern: str | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    workers: int | None = None,
    on_file: Callable[[int], None] | None = None,
) -> dict:
    """Write the pack of `paths` into `out_dir` (created); returns the contents of pack.json.

    Groups and splits follow `holoprot train` (`--groups`, `--group-pattern`, `--split`,
    seed). Files that fail are skipped and listed in pack.json; no readable file is an error.
    """
    settings = settings or ProjectionSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pack.json").unlink(missing_ok=True)
    packed: list[_PackedFile] = []
    failures: list[str] = []
    workers = default_workers(len(paths)) if workers is None else workers
    if workers:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = pool.map(_pack_file, paths, [settings] * len(paths), chunksize=4)
            for item in results:
                (failures.append if isinstance(item, str) else packed.append)(item)
                if on_file is not None:
                    on_file(1)
    else:
        for p in paths:
            item = _pack_file(str(p), settings)
            (failures.append if isinstance(item, str) else packed.append)(item)
            if on_file is not None:
                on_file(1)
    if not packed:
        raise HoloprotError(f"no residues in any of the {len(paths)} input file(s)")
    ids = np.array([f.structure_id for f in packed], dtype=object)
    mapping, pinned = read_group_file(group_file) if group_file else (None, None)
    groups = assign_groups(ids, mapping=mapping, pattern=group_pattern)
    split = split_groups(groups, fractions, seed=split_seed, pinned=pinned)

    xyz = np.concatenate([f.xyz for f in packed])
    atoms = pa.table(
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "channel": np.concatenate([f.channel for f in packed]),
        }
    )
    _write_parquet(atoms, out / "atoms.parquet", {"x": "DELTA_BINARY_PACKED"})
    residue_cols = {"structure": [], "centre": [], **{c: [] for c in _RESIDUE_COLUMNS}}
    for i, f in enumerate(packed):
        residue_cols["structure"].append(np.full(len(f.residues["centre"]), i, np.int32))
        for c in ("centre", *_RESIDUE_COLUMNS):
            residue_cols[c].append(f.residues[c])
    residues = pa.table({c: np.concatenate(v) for c, v in residue_cols.items()})
    _write_parquet(residues, out / "residues.parquet", {"centre": "DELTA_BINARY_PACKED"})
    structures = pa.table(
        {
            "structure_id": pa.array(ids.tolist(), pa.string()),
            "source_path": pa.array([f.source for f in packed], pa.string()),
            "model": pa.array([f.model for f in packed], pa.int32()),
            "group": pa.array(groups.astype(str).tolist(), pa.string()),
            "split": pa.array(split.astype(str).tolist(), pa.string()),
            "n_atoms": pa.array([len(f.xyz) for f in packed], pa.int64()),
            "n_residues": pa.array([len(f.residues["centre"]) for f in packed], pa.int64()),
            "max_error": pa.array([f.max_error for f in packed], pa.float64()),
        }
    )
    _write_parquet(structures, out / "structures.parquet", {})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "coordinate_step": COORDINATE_STEP,
        "radius": settings.radius,
        "basis": settings.basis.metadata(),
        "n_structures": len(packed),
        "n_atoms": int(len(xyz)),
        "n_residues": int(residues.num_rows),
        "max_coordinate_error": max(f.max_error for f in packed),
        "split_residues": {
            s: int(structures.column("n_residues").to_numpy()[split == s].sum())
            for s in ("train", "val", "test")
        },
        "group_file": str(group_file) if group_file else None,
        "group_pattern": group_pattern,
        "fractions": list(fractions),
        "split_seed": split_seed,
        "failures": failures,
        "holoprot_version": __version__,
    }
    write_json_atomic(out / "pack.json", meta)  # last: a pack without pack.json is unfinished
    return meta


def _write_parquet(table: pa.Table, path: Path, delta: dict[str, str]) -> None:
    """zstd-compressed Parquet; integer columns named in `delta` (and x, y, z) delta-encoded."""
    encodings = {c: "DELTA_BINARY_PACKED" for c in table.column_names if c in ("x", "y", "z")}
    encodings.update(delta)
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=19,
            use_dictionary=[c for c in table.column_names if c not in encodings],
            column_encoding=encodings or None,
            row_group_size=1 << 22,
        )


# ---- reading ----------------------------------------------------------------------------------
@dataclass
class Pack:
    """A pack in memory.

    Attributes:
        xyz: (N, 3) int32 coordinates in units of ``COORDINATE_STEP``, all structures.
        channel: (N,) int8 channel of each atom.
        atom_offsets: (S + 1,) int64, atoms of structure s are rows atom_offsets[s]:[s + 1].
        residues: residues.parquet; residue_offsets: (S + 1,) int64 likewise for its rows.
        structures: structures.parquet; meta: pack.json.
    """

    xyz: np.ndarray
    channel: np.ndarray
    atom_offsets: np.ndarray
    residues: pa.Table
    residue_offsets: np.ndarray
    structures: pa.Table
    meta: dict

    def __len__(self) -> int:
        return self.structures.num_rows

    @property
    def basis(self) -> ZernikeBasis:
        b = self.meta["basis"]
        return ZernikeBasis(
            b["lmax"], b["nmax"], b["rcut"], tuple(b["channels"]), b["normalization"]
        )

    def coordinates(self, s: int) -> np.ndarray:
        """(n_atoms, 3) float64 Å of structure `s`."""
        a0, a1 = self.atom_offsets[s], self.atom_offsets[s + 1]
        return self.xyz[a0:a1] / _SCALE

    def centres(self, s: int) -> np.ndarray:
        """(n_residues,) int64 Cα rows of structure `s`'s neighbourhoods, within its atoms."""
        r0, r1 = self.residue_offsets[s], self.residue_offsets[s + 1]
        return self._centre[r0:r1].astype(np.int64)

    def neighborhoods(self, s: int) -> Neighborhoods:
        """Structure `s`'s neighbourhoods (channel atoms only), as `extract_neighborhoods` gives
        them from the file; ``residue_index`` counts neighbourhoods, ``atom_index`` pack rows."""
        a0, a1 = self.atom_offsets[s], self.atom_offsets[s + 1]
        elements = np.asarray(self.basis.channels, dtype="<U2")[self.channel[a0:a1]]
        centres = self.centres(s)
        return neighborhoods_around(
            self.coordinates(s), elements, np.arange(len(centres)), centres, self.meta["radius"]
        )

    def identity(self) -> pa.Table:
        """One identity row per neighbourhood (IDENTITY_SCHEMA), as holoprot's dataset index."""
        structure = self.residues.column("structure")
        columns = {
            name: self.structures.column(name).take(structure)
            for name in ("structure_id", "source_path", "model")
        }
        columns.update({c: self.residues.column(c) for c in _RESIDUE_COLUMNS})
        return pa.table(columns).select(IDENTITY_SCHEMA.names).cast(IDENTITY_SCHEMA)

    def split(self) -> np.ndarray:
        """(n_residues,) object array of 'train' / 'val' / 'test'."""
        per_structure = np.asarray(self.structures.column("split").to_pylist(), dtype=object)
        return per_structure[self.residues.column("structure").to_numpy()]

    def groups(self) -> np.ndarray:
        """(n_residues,) object array of group names."""
        per_structure = np.asarray(self.structures.column("group").to_pylist(), dtype=object)
        return per_structure[self.residues.column("structure").to_numpy()]

    def write_split(self, path: str | os.PathLike) -> None:
        """``split.csv`` as `holoprot train` writes it: source_path, structure_id, group, split."""
        columns = ("source_path", "structure_id", "group", "split")
        rows = zip(*(self.structures.column(c).to_pylist() for c in columns), strict=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(rows)

    def __post_init__(self) -> None:
        self._centre = self.residues.column("centre").to_numpy()


def load_pack(path: str | os.PathLike) -> Pack:
    """Read a finished pack folder."""
    folder = Path(path)
    try:
        meta = json.loads((folder / "pack.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(folder, f"not a finished training pack ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(folder, f"not a version-{VERSION} {FORMAT}")
    atoms = pq.read_table(folder / "atoms.parquet")
    xyz = np.stack([atoms.column(c).to_numpy() for c in ("x", "y", "z")], axis=1)
    structures = pq.read_table(folder / "structures.parquet")

    def offsets(counts: str) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(structures.column(counts).to_numpy())])

    return Pack(
        xyz=xyz,
        channel=atoms.column("channel").to_numpy(),
        atom_offsets=offsets("n_atoms"),
        residues=pq.read_table(folder / "residues.parquet"),
        residue_offsets=offsets("n_residues"),
        structures=structures,
        meta=meta,
    )


# ---- projecting -------------------------------------------------------------------------------
def pairs_within_torch(
    xyz: torch.Tensor, centres: torch.Tensor, radius: float, max_elements: int = 1 << 24
) -> tuple[torch.Tensor, torch.Tensor]:
    """The neighbourhood rule of `holoprot.zernike.neighborhoods` in torch, on xyz's device.

    xyz: (N, 3) float64 Å; centres: (M,) int64 rows of xyz. Returns (segment, atom) int64 pairs,
    sorted by centre then atom: atoms with ``MIN_DISTANCE <= |x − c| <= radius`` (float64),
    the centre atom itself excluded. Works on chunks of centres of about `max_elements` pairs.
    """
    segments, atoms = [], []
    step = max(1, max_elements // max(1, len(xyz)))
    for c0 in range(0, len(centres), step):
        c = centres[c0 : c0 + step]
        rel = xyz[None, :, :] - xyz[c][:, None, :]
        x, y, z = rel.unbind(-1)
        dist = torch.sqrt(x * x + y * y + z * z)
        mask = (dist <= radius) & (dist >= MIN_DISTANCE)
        mask[torch.arange(len(c), device=xyz.device), c] = False
        seg, atom = mask.nonzero(as_tuple=True)
        segments.append(seg + c0)
        atoms.append(atom)
    if not segments:
        empty = torch.zeros(0, dtype=torch.int64, device=xyz.device)
        return empty, empty
    return torch.cat(segments), torch.cat(atoms)


def project_pack(
    pack: Pack,
    device: str | torch.device = "cpu",
    *,
    backend: str = "auto",
    batch_neighborhoods: int = 8192,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Zernike coefficients of every neighbourhood of the pack: (n_residues, dim) float32.

    `backend` as in `ZernikeBasis.project`. numba (CPU): `Pack.neighborhoods` and the numba
    kernel, the path of `holoprot train`. torch (any device, the choice on CUDA):
    neighbourhoods by `pairs_within_torch` and the torch projection on `device`, structures
    gathered into batches of about `batch_neighborhoods`. `on_batch(n)` after each batch.
    """
    device = torch.device(device)
    basis = pack.basis
    out = np.empty((pack.residues.num_rows, basis.dim), dtype=np.float32)
    if use_numba(backend, device.type == "cpu"):
        with torch.no_grad():
            for s in range(len(pack)):
                r0, r1 = pack.residue_offsets[s], pack.residue_offsets[s + 1]
                out[r0:r1] = basis.project_neighborhoods(pack.neighborhoods(s)).numpy()
                if on_batch is not None:
                    on_batch(int(r1 - r0))
        return out
    xyz_all = torch.as_tensor(pack.xyz / _SCALE).to(device)  # exact division, in numpy
    channel_all = torch.as_tensor(pack.channel.astype(np.int64)).to(device)
    radius = float(pack.meta["radius"])
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    first = pending = 0
    with torch.no_grad():
        for s in range(len(pack)):
            a0, a1 = int(pack.atom_offsets[s]), int(pack.atom_offsets[s + 1])
            xyz = xyz_all[a0:a1]
            centres = torch.as_tensor(pack.centres(s)).to(device)
            seg, atom = pairs_within_torch(xyz, centres, radius)
            rel = (xyz[atom] - xyz[centres[seg]]).to(torch.float32)
            parts.append((rel, channel_all[a0:a1][atom], seg + pending))
            pending += len(centres)
            if pending >= batch_neighborhoods or s == len(pack) - 1:
                rel, ch, seg = (torch.cat(p) for p in zip(*parts, strict=True))
                coeffs = basis.project(rel, ch, seg, pending, backend="torch")
                out[first : first + pending] = coeffs.cpu().numpy()
                if on_batch is not None:
                    on_batch(pending)
                first, pending, parts = first + pending, 0, []
    return out


def pack_dataset(pack: Pack, coefficients: np.ndarray) -> CoefficientDataset:
    """The pack's coefficients as an in-memory `CoefficientDataset` (one shard)."""
    n = len(coefficients)
    index = (
        pack.identity()
        .append_column("shard", pa.array(np.zeros(n, np.int32)))
        .append_column("row", pa.array(np.arange(n, dtype=np.int64)))
    )
    manifest = {
        "settings": {"basis": pack.basis.metadata(), "radius": pack.meta["radius"], "model": None},
        "n_files": len(pack),
        "n_residues": n,
        "n_shards": 1,
        "failures": pack.meta["failures"],
    }
    return CoefficientDataset(index, [coefficients], manifest)
