"""Complex features for the affinity forest.

* `hae`: H-(V)AE invariant latents of the pocket residues' neighbourhoods, aggregated per complex
  (`sum` as in the reference, `mean`, or `sum+count` = sum plus the number of pocket residues).
  Pocket residues: `pocket.pocket_residues` on the full protein when there is one, else on the
  pocket file (a pocket file truncates the 10 Å spheres). Neighbourhoods (the embedder's radius,
  10 Å by default) are cut from that same structure (waters and H already dropped by
  `read_structure`) with the ligand heavy atoms added as environment atoms. Per-residue latents
  are cached per complex as `.npz` (read with `allow_pickle=False`) under a key made of the
  weights sha256, the pocket cutoff, the radius and the sha256 of every input file, so changing
  forest settings or the aggregation re-embeds nothing.
* `counts`: RF-Score-style (Ballester & Mitchell 2010) counts of protein–ligand heavy-atom pairs
  within 12 Å (inclusive), for protein elements C, N, O, S × ligand elements C, N, O, F, P, S, Cl,
  Br, I (36 features). Protein atoms are all non-water heavy atoms of the structure file (protein
  when present, else pocket, where counts beyond the pocket's extent are lost).

* `zernike-l0`: the paper's "Zernike invariants" baseline: the same pocket neighbourhoods'
  rotation-invariant l = 0 Zernike coefficients (the first 44 of the 1708: 4 channels × 11 radial
  orders, default `ZernikeBasis`), aggregated like the latents. Cached like them.
* Feature sets (`FEATURE_SETS`): a kind alone, or `hae+counts` / `hae+zernike-l0`, the kinds'
  columns concatenated in the order written. `feature_columns` names every column; the names are
  recorded with a model and checked before it predicts.

Which protein atoms count (waters, hydrogens and rebuilt atoms are dropped): `preparation`.

A complex that fails for any requested kind is skipped for all kinds (and reported), so that
feature kinds are compared on the same complexes. `torch` is imported only when an `Embedder` is
built (`load_embedder`) or Zernike coefficients are projected, so `counts` never loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.spatial import cKDTree

from holoprot._util.hashing import sha256_file
from holoprot.affinity.dataset import ComplexFiles, Failure, Ligand, collect_failure, read_ligand
from holoprot.affinity.pocket import DEFAULT_CUTOFF, pocket_residues
from holoprot.affinity.preparation import read_protein
from holoprot.errors import HoloprotError, InputError
from holoprot.zernike.neighborhoods import extract_neighborhoods

FEATURE_KINDS = ("hae", "zernike-l0", "counts")
FEATURE_SETS = ("hae", "zernike-l0", "counts", "hae+counts", "hae+zernike-l0")
ZERNIKE_L0_DIM = 44
ZERNIKE_CACHE_TAG = "zernike-l0:lmax6-nmax20-rcut10-square-CNOS"
AGGREGATES = ("sum", "mean", "sum+count")
NEIGHBORHOOD_RADIUS = 10.0
COUNT_CUTOFF = 12.0
COUNT_PROTEIN_ELEMENTS = ("C", "N", "O", "S")
COUNT_LIGAND_ELEMENTS = ("C", "N", "O", "F", "P", "S", "CL", "BR", "I")
# v2: rebuilt atoms (B-factor 999.99) dropped before the neighbourhoods are cut
CACHE_FORMAT = "holoprot-affinity-v2"


class EmbedderLike(Protocol):
    """What the `hae` featuriser needs from `holoprot.Embedder` (an optional `radius`
    attribute, Å, sets the neighbourhood radius; default 10)."""

    weights_name: str
    weights_sha256: str
    latent_dim: int

    def embed_neighborhoods(self, nbh) -> np.ndarray: ...


def load_embedder(weights: str = "default", device: str = "auto") -> EmbedderLike:
    """A `holoprot.embedding.embedder.Embedder` (imports torch)."""
    try:
        from holoprot.embedding.embedder import Embedder
    except ImportError as exc:
        raise HoloprotError(
            f"the hae features need holoprot.embedding.embedder and torch ({exc})"
        ) from None
    return Embedder(weights=weights, device=device)


def default_cache_dir() -> Path:
    """`$HOLOPROT_CACHE_DIR/affinity`, else `$XDG_CACHE_HOME/holoprot/affinity` (~/.cache)."""
    if os.environ.get("HOLOPROT_CACHE_DIR"):
        return Path(os.environ["HOLOPROT_CACHE_DIR"]) / "affinity"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "holoprot" / "affinity"


def set_kinds(feature_set: str) -> list[str]:
    """The kinds of a feature set, in column order: 'hae+counts' -> ['hae', 'counts']."""
    kinds = feature_set.split("+")
    if feature_set not in FEATURE_SETS:
        raise InputError(
            "--features", f"unknown features {feature_set!r} (choose {', '.join(FEATURE_SETS)})"
        )
    return kinds


def zernike_l0_names() -> list[str]:
    """Names of the 44 `zernike-l0` columns in projection order: 'C:n0' … 'S:n20'."""
    from holoprot.zernike.basis import ZernikeBasis

    layout = ZernikeBasis().layout()
    channels = ZernikeBasis().channels
    return [
        f"{channels[c]}:n{n}"
        for c, n in zip(
            layout["channel"][:ZERNIKE_L0_DIM], layout["n"][:ZERNIKE_L0_DIM], strict=True
        )
    ]


def feature_columns(feature_set: str, latent_dim: int | None = None, how: str = "sum") -> list[str]:
    """Column names of a feature set, prefixed by kind ('hae:0', 'zernike-l0:C:n0', 'counts:C-N');
    `hae` needs the embedder's `latent_dim`; `sum+count` adds 'hae:n_pocket' /
    'zernike-l0:n_pocket'."""
    names: list[str] = []
    for kind in set_kinds(feature_set):
        if kind == "counts":
            names += [f"counts:{n}" for n in count_feature_names()]
            continue
        if kind == "hae":
            if latent_dim is None:
                raise ValueError("the hae columns need latent_dim")
            names += [f"hae:{i}" for i in range(latent_dim)]
        else:
            names += [f"zernike-l0:{n}" for n in zernike_l0_names()]
        if how == "sum+count":
            names.append(f"{kind}:n_pocket")
    return names


def count_feature_names() -> list[str]:
    """Names of the 36 `counts` features, `protein-ligand` element pairs, e.g. 'C-CL'."""
    return [f"{p}-{lig}" for p in COUNT_PROTEIN_ELEMENTS for lig in COUNT_LIGAND_ELEMENTS]


def count_features(
    protein_coords: np.ndarray, protein_element: np.ndarray, ligand: Ligand
) -> np.ndarray:
    """(36,) float64 pair counts within `COUNT_CUTOFF` Å, row-major (protein el., ligand el.)."""
    protein_coords = np.asarray(protein_coords, dtype=np.float64)
    counts = np.zeros((len(COUNT_PROTEIN_ELEMENTS), len(COUNT_LIGAND_ELEMENTS)))
    for i, p_el in enumerate(COUNT_PROTEIN_ELEMENTS):
        atoms = protein_coords[protein_element == p_el]
        if len(atoms) == 0:
            continue
        tree = cKDTree(atoms)
        for j, l_el in enumerate(COUNT_LIGAND_ELEMENTS):
            lig = ligand.coords[ligand.element == l_el]
            if len(lig):
                counts[i, j] = tree.query_ball_point(lig, COUNT_CUTOFF, return_length=True).sum()
    return counts.ravel()


def aggregate(latents: np.ndarray, how: str = "sum") -> np.ndarray:
    """Complex vector from (P, D) pocket latents: (D,) sum or mean, or (D+1,) sum and P."""
    latents = np.asarray(latents, dtype=np.float64)
    if how == "sum":
        return latents.sum(axis=0)
    if how == "mean":
        return latents.mean(axis=0)
    if how == "sum+count":
        return np.append(latents.sum(axis=0), latents.shape[0])
    raise InputError("--aggregate", f"unknown aggregation {how!r} (choose {', '.join(AGGREGATES)})")


class EmbeddingCache:
    """Per-complex pocket latents as `<key>.npz` files in `folder` (None: no caching)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = None if folder is None else Path(folder)

    @staticmethod
    def key(
        complex_files: ComplexFiles,
        weights_sha256: str,
        pocket_cutoff: float,
        radius: float = NEIGHBORHOOD_RADIUS,
    ) -> str:
        """Hex sha256 of the cache format, weights, cutoff, radius and input file contents."""
        files = [complex_files.protein, complex_files.pocket, *complex_files.ligands]
        record = {
            "format": CACHE_FORMAT,
            "weights_sha256": weights_sha256,
            "pocket_cutoff": float(pocket_cutoff),
            "radius": float(radius),
            "files": [None if f is None else sha256_file(f) for f in files],
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def load(self, key: str, weights_sha256: str) -> np.ndarray | None:
        """(P, D) float32 latents, or None when absent, unreadable or made with other weights."""
        if self.folder is None:
            return None
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["weights_sha256"]) != weights_sha256:
                    return None
                return np.asarray(data["latents"], dtype=np.float32)
        except (OSError, KeyError, ValueError):
            return None

    def ligand_source(self, key: str) -> str | None:
        """The ligand file recorded with a cached entry (None if absent or not recorded)."""
        if self.folder is None:
            return None
        try:
            with np.load(self.folder / f"{key}.npz", allow_pickle=False) as data:
                return str(data["ligand_source"])
        except (OSError, KeyError, ValueError):
            return None

    def save(
        self, key: str, weights_sha256: str, latents: np.ndarray, ligand_source: str = ""
    ) -> None:
        """Write atomically (temp file + rename) so concurrent runs never see half a file."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    latents=latents,
                    weights_sha256=np.array(weights_sha256),
                    ligand_source=np.array(ligand_source),
                )
            os.replace(tmp, self.folder / f"{key}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class FeatureTable:
    """Features of the complexes that could be featurised, in input order.

    `features[kind]` is (n, d) float64 for each requested kind; `ids`, `labels` (n,) (NaN where
    unlabelled) and `splits` follow the same rows; `ligand_source` says which file was read.
    `embed_seconds` / `n_embedded` time the `hae` complexes embedded (pocket, neighbourhoods,
    projection, encoder) and `project_seconds` / `n_projected` the `zernike-l0` ones (pocket,
    neighbourhoods, projection); `n_rebuilt_dropped` counts rebuilt atoms left out.
    """

    ids: list[str]
    labels: np.ndarray
    splits: list[str | None]
    features: dict[str, np.ndarray]
    n_pocket: np.ndarray
    ligand_source: list[str]
    failures: list[Failure] = field(default_factory=list)
    n_embedded: int = 0
    n_cached: int = 0
    embed_seconds: float = 0.0
    n_projected: int = 0
    n_projected_cached: int = 0
    project_seconds: float = 0.0
    n_rebuilt_dropped: int = 0

    def matrix(self, feature_set: str) -> np.ndarray:
        """(n, d) features of a set, its kinds' columns concatenated in `feature_columns` order."""
        return np.concatenate([self.features[k] for k in set_kinds(feature_set)], axis=1)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of `ids` (each must be present)."""
        where = {complex_id: row for row, complex_id in enumerate(self.ids)}
        return np.array([where[i] for i in ids], dtype=np.int64)


def _pocket_neighborhoods(structure, ligand: Ligand, pocket_cutoff: float, radius: float):
    pocket = pocket_residues(structure, ligand.coords, pocket_cutoff)
    if len(pocket) == 0:
        raise HoloprotError(f"no residue Cα within {pocket_cutoff:g} Å of the ligand")
    return extract_neighborhoods(
        structure, radius, residues=pocket, extra_coords=ligand.coords, extra_element=ligand.element
    )


def zernike_l0(nbh) -> np.ndarray:
    """(P, 44) float32 l = 0 coefficients of each neighbourhood (default `ZernikeBasis`)."""
    from holoprot.zernike.basis import ZernikeBasis

    return np.ascontiguousarray(ZernikeBasis().coefficients(nbh)[:, :ZERNIKE_L0_DIM])


def featurise(
    complexes: Sequence[ComplexFiles],
    kinds: Sequence[str],
    *,
    embedder: EmbedderLike | None = None,
    pocket_cutoff: float = DEFAULT_CUTOFF,
    how: str = "sum",
    cache: EmbeddingCache | None = None,
    progress: Callable[[], None] | None = None,
) -> FeatureTable:
    """Features of each complex for each of `kinds` (see `FEATURE_KINDS`); failures collected."""
    unknown = sorted(set(kinds) - set(FEATURE_KINDS))
    if unknown or not kinds:
        raise InputError("--features", f"unknown feature kind(s) {unknown or kinds}")
    if "hae" in kinds and embedder is None:
        raise ValueError("the hae features need an embedder")
    aggregate(np.zeros((1, 1)), how)  # validates `how` before any work
    cache = cache or EmbeddingCache(None)
    radius = float(getattr(embedder, "radius", NEIGHBORHOOD_RADIUS))
    pocket_kinds = {
        kind: (embedder.weights_sha256, radius) if kind == "hae" else (ZERNIKE_CACHE_TAG, 10.0)
        for kind in kinds
        if kind != "counts"
    }
    table = FeatureTable([], np.zeros(0), [], {k: [] for k in kinds}, np.zeros(0), [])
    labels, n_pocket = [], []
    for complex_files in complexes:
        stage = "files"
        try:
            structure = ligand = None
            keys: dict[str, str] = {}
            per_residue: dict[str, np.ndarray | None] = {}
            for kind, (tag, kind_radius) in pocket_kinds.items():
                keys[kind] = cache.key(complex_files, tag, pocket_cutoff, kind_radius)
                per_residue[kind] = cache.load(keys[kind], tag)
            if "counts" in kinds or any(v is None for v in per_residue.values()):
                stage = "ligand"
                ligand = read_ligand(complex_files.ligands)
                stage = "structure"
                structure, n_rebuilt = read_protein(complex_files.structure_file)
                table.n_rebuilt_dropped += n_rebuilt
            row: dict[str, np.ndarray] = {}
            if "counts" in kinds:
                stage = "counts"
                row["counts"] = count_features(structure.coords, structure.element, ligand)
            for kind, (tag, kind_radius) in pocket_kinds.items():
                stage = "embedding" if kind == "hae" else "zernike"
                values = per_residue[kind]
                if values is None:
                    start = time.perf_counter()
                    nbh = _pocket_neighborhoods(structure, ligand, pocket_cutoff, kind_radius)
                    if kind == "hae":
                        values = np.asarray(embedder.embed_neighborhoods(nbh), dtype=np.float32)
                        if values.shape != (len(nbh), embedder.latent_dim):
                            raise HoloprotError(f"embedder returned shape {values.shape}")
                        table.embed_seconds += time.perf_counter() - start
                        table.n_embedded += 1
                    else:
                        values = zernike_l0(nbh)
                        table.project_seconds += time.perf_counter() - start
                        table.n_projected += 1
                    cache.save(keys[kind], tag, values, ligand.source)
                elif kind == "hae":
                    table.n_cached += 1
                else:
                    table.n_projected_cached += 1
                per_residue[kind] = values
                row[kind] = aggregate(values, how)
        except (HoloprotError, OSError, ValueError, RuntimeError, KeyError, IndexError) as exc:
            table.failures.append(collect_failure(complex_files.id, stage, exc))
        else:
            table.ids.append(complex_files.id)
            table.splits.append(complex_files.split)
            table.ligand_source.append(
                ligand.source
                if ligand is not None
                else cache.ligand_source(next(iter(keys.values()))) or "cached"
            )
            labels.append(np.nan if complex_files.label is None else complex_files.label)
            pocket_sizes = [len(v) for v in per_residue.values() if v is not None]
            n_pocket.append(pocket_sizes[0] if pocket_sizes else -1)
            for kind, values in row.items():
                table.features[kind].append(values)
        if progress is not None:
            progress()
    table.labels = np.asarray(labels, dtype=np.float64)
    table.n_pocket = np.asarray(n_pocket, dtype=np.int64)
    table.features = {
        kind: np.asarray(rows, dtype=np.float64) if rows else np.zeros((0, 0))
        for kind, rows in table.features.items()
    }
    return table
