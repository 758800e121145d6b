"""Sequence-identity clusters of the proteins of a complex set, and k folds that keep each cluster
whole, so that no test-fold protein has >= 30 % identity to a protein in its training folds
(the rule of ATOM3D LBA's 30 % split).

* Sequence of a complex: one-letter sequence (gemmi's table; 'X' for letters not in BLOSUM62) of
  every chain with an amino acid whose Cα is within `BINDING_CHAIN_CUTOFF` Å of a ligand heavy
  atom, read from the featurised structure (`preparation.read_protein`: the full protein when
  present, else the pocket). Chains shorter than `MIN_CHAIN_LENGTH` (peptides, a thrombin light
  chain) are left out unless the complex has no longer one.
* Identity of two chains: Biopython's `PairwiseAligner`, local (Smith–Waterman) alignment,
  BLOSUM62, gap open −11, extend −1 (BLAST's protein defaults); identity = identical aligned
  residues / length of the shorter chain. This is ATOM3D's rule (BLAST identities / query length)
  made symmetric: a short domain inside a long chain scores its own identity, and unrelated
  chains stay near 10 % (a global alignment with free end gaps gave unrelated short chains
  30 % and more, joining most of PDBbind into one cluster). Identity of two complexes: the
  maximum over their chain pairs.
* Clusters: single linkage (connected components) of the pairs with identity >= threshold, so
  any pair across two clusters is below it. Folds: clusters, largest first, each to the fold with
  the fewest complexes so far (ties broken by a seeded permutation).

`save_clusters` writes `clusters.csv` (id, cluster, fold, chains, length, sequence) and
`identity_pairs.csv` (every pair at or above 0.2 identity) so a split can be reproduced and checked
without re-aligning; `load_clusters` reads it back.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from holoprot._util.disjoint_sets import DisjointSets
from holoprot.affinity import splits as sp
from holoprot.affinity.dataset import ComplexFiles, Failure, collect_failure, read_ligand
from holoprot.affinity.preparation import read_protein
from holoprot.errors import HoloprotError, InputError
from holoprot.io.structure import Structure

IDENTITY_THRESHOLD = 0.30
BINDING_CHAIN_CUTOFF = 10.0
PAIR_RECORD_MIN = 0.20
MIN_CHAIN_LENGTH = 30
_ALPHABET = frozenset("ARNDCQEGHILKMFPSTWYVBZX")  # BLOSUM62 letters
ALIGNER = "Biopython PairwiseAligner (local, BLOSUM62, gap open -11, extend -1)"


def chain_sequences(
    structure: Structure,
    ligand_coords: np.ndarray | None = None,
    cutoff: float = BINDING_CHAIN_CUTOFF,
) -> dict[str, str]:
    """{chain: one-letter sequence} of the amino acids with a Cα, in file order; with
    `ligand_coords` (L, 3) Å only chains with a Cα within `cutoff` Å of a ligand atom."""
    import gemmi

    from holoprot.zernike.neighborhoods import centre_atoms

    residues, ca_atoms, _ = centre_atoms(structure)
    if ligand_coords is not None and len(residues):
        near, _ = cKDTree(np.asarray(ligand_coords, dtype=np.float64)).query(
            structure.coords[ca_atoms], k=1
        )
        binding = {structure.chain[r] for r, d in zip(residues, near, strict=True) if d <= cutoff}
    else:
        binding = {structure.chain[r] for r in residues}
    out: dict[str, list[str]] = {}
    for r in residues:
        chain = structure.chain[r]
        if chain in binding:
            info = gemmi.find_tabulated_residue(str(structure.res_name[r]))
            code = info.one_letter_code.upper() if info is not None else "X"
            out.setdefault(chain, []).append(code if code in _ALPHABET else "X")
    return {chain: "".join(codes) for chain, codes in out.items()}


def make_aligner():
    """The pairwise aligner used for identities (see the module docstring)."""
    from Bio import Align
    from Bio.Align import substitution_matrices

    return Align.PairwiseAligner(
        mode="local",
        substitution_matrix=substitution_matrices.load("BLOSUM62"),
        open_gap_score=-11.0,
        extend_gap_score=-1.0,
    )


def sequence_identity(a: str, b: str, aligner=None) -> float:
    """Identical aligned residues / min(len(a), len(b)) of the best local alignment (0 if
    either is empty or nothing aligns)."""
    if not a or not b:
        return 0.0
    aligner = aligner or make_aligner()
    if aligner.score(a, b) <= 0:
        return 0.0
    alignment = aligner.align(a, b)[0]
    return alignment.counts().identities / min(len(a), len(b))


def complex_identity(a: Sequence[str], b: Sequence[str], aligner=None) -> float:
    """Maximum identity over the chain pairs of two complexes."""
    aligner = aligner or make_aligner()
    return max((sequence_identity(x, y, aligner) for x in a for y in b), default=0.0)


@dataclass(frozen=True)
class Clusters:
    """Cluster and fold of each complex id, and the pair identities that were computed.

    `pairs` maps (id_a, id_b), id_a < id_b, to identity (rounded to 4 decimals) for every pair
    >= `PAIR_RECORD_MIN` (pairs of complexes with identical chain sequences included, at 1.0).
    """

    cluster: dict[str, int]
    fold: dict[str, int]
    sequences: dict[str, tuple[str, ...]]
    pairs: dict[tuple[str, str], float]
    threshold: float
    k: int
    seed: int


def _components(n: int, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    sets = DisjointSets(n)
    for i, j in edges:
        sets.union(i, j)
    roots = [sets.find(i) for i in range(n)]
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def assign_folds(cluster: Mapping[str, int], k: int, seed: int = 0) -> dict[str, int]:
    """Fold 0…k−1 of each id: whole clusters, largest first, to the currently smallest fold."""
    members: dict[int, list[str]] = {}
    for complex_id, c in cluster.items():
        members.setdefault(c, []).append(complex_id)
    if k < 2 or k > len(members):
        raise InputError("--k-folds", f"needs 2 <= k <= {len(members)} clusters, got {k}")
    shuffled = np.random.default_rng(seed).permutation(sorted(members))
    order = sorted(shuffled, key=lambda c: -len(members[c]))  # stable: seeded ties
    sizes = np.zeros(k, dtype=np.int64)
    fold: dict[str, int] = {}
    for c in order:
        target = int(np.argmin(sizes))
        sizes[target] += len(members[c])
        for complex_id in members[c]:
            fold[complex_id] = target
    return fold


def cluster_complexes(
    sequences: Mapping[str, Sequence[str]],
    *,
    threshold: float = IDENTITY_THRESHOLD,
    k: int = 5,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> Clusters:
    """Single-linkage clusters at `threshold` identity and k folds (see the module docstring).

    Complexes with the same set of chain sequences are aligned once.
    """
    ids = sorted(sequences)
    unique: dict[tuple[str, ...], int] = {}
    of_id = [unique.setdefault(tuple(sorted(set(sequences[i]))), len(unique)) for i in ids]
    keys = list(unique)
    aligner = make_aligner()
    identity = np.eye(len(keys))
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            identity[a, b] = identity[b, a] = complex_identity(keys[a], keys[b], aligner)
        if progress is not None:
            progress()
    edges = [(a, b) for a, b in zip(*np.nonzero(identity >= threshold), strict=True) if a < b]
    labels = _components(len(keys), edges)
    cluster = {complex_id: int(labels[u]) for complex_id, u in zip(ids, of_id, strict=True)}
    pairs = {
        (ids[i], ids[j]): round(float(identity[of_id[i], of_id[j]]), 4)
        for i in range(len(ids))
        for j in range(i + 1, len(ids))
        if identity[of_id[i], of_id[j]] >= PAIR_RECORD_MIN
    }
    return Clusters(
        cluster=cluster,
        fold=assign_folds(cluster, k, seed),
        sequences={i: tuple(sequences[i]) for i in ids},
        pairs=pairs,
        threshold=threshold,
        k=k,
        seed=seed,
    )


def fold_splits(clusters: Clusters, ids: Sequence[str], seed: int = 0) -> list[sp.Split]:
    """One `Split` per fold over `ids`: that fold as test, the others as train (validation for
    the grid search carved at random from train)."""
    missing = sorted(set(ids) - set(clusters.fold))
    if missing:
        raise InputError("clusters", f"no cluster for {len(missing)} ids, e.g. {missing[0]}")
    method = (
        f"cluster-cv: {clusters.k} folds, no test protein >= {clusters.threshold:.0%} identity "
        f"to a training protein (seed {clusters.seed})"
    )
    return [
        sp.held_out(
            ids,
            [i for i in ids if clusters.fold[i] == f],
            method=f"{method}, fold {f + 1}",
            seed=seed + f,
        )
        for f in range(clusters.k)
    ]


def save_clusters(clusters: Clusters, folder: str | os.PathLike) -> None:
    """`clusters.csv` and `identity_pairs.csv` in `folder` (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "clusters.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cluster", "fold", "threshold", "k", "seed", "sequences"])
        for complex_id in sorted(clusters.cluster):
            writer.writerow(
                [
                    complex_id,
                    clusters.cluster[complex_id],
                    clusters.fold[complex_id],
                    clusters.threshold,
                    clusters.k,
                    clusters.seed,
                    " ".join(clusters.sequences[complex_id]),
                ]
            )
    with open(folder / "identity_pairs.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_a", "id_b", "identity"])
        for (a, b), value in sorted(clusters.pairs.items()):
            writer.writerow([a, b, f"{value:.4f}"])


def load_clusters(folder: str | os.PathLike) -> Clusters:
    """Clusters written by `save_clusters`."""
    folder = Path(folder)
    try:
        with open(folder / "clusters.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        with open(folder / "identity_pairs.csv", newline="", encoding="utf-8") as handle:
            pair_rows = list(csv.DictReader(handle))
        if not rows:
            raise ValueError("no rows")
        return Clusters(
            cluster={r["id"]: int(r["cluster"]) for r in rows},
            fold={r["id"]: int(r["fold"]) for r in rows},
            sequences={r["id"]: tuple(r["sequences"].split()) for r in rows},
            pairs={(r["id_a"], r["id_b"]): float(r["identity"]) for r in pair_rows},
            threshold=float(rows[0]["threshold"]),
            k=int(rows[0]["k"]),
            seed=int(rows[0]["seed"]),
        )
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(folder, f"cannot read clusters ({exc})") from None


def complex_sequences(
    complexes: Sequence[ComplexFiles],
) -> tuple[dict[str, tuple[str, ...]], list[Failure]]:
    """Binding-chain sequences of each complex (see the module docstring), and the failures."""
    sequences: dict[str, tuple[str, ...]] = {}
    failures: list[Failure] = []
    for complex_files in complexes:
        try:
            ligand = read_ligand(complex_files.ligands)
            structure, _ = read_protein(complex_files.structure_file)
            chains = chain_sequences(structure, ligand.coords)
            if not chains:
                raise InputError(complex_files.structure_file, "no amino acid near the ligand")
            long = [s for s in chains.values() if len(s) >= MIN_CHAIN_LENGTH]
            sequences[complex_files.id] = tuple(long or chains.values())
        except (HoloprotError, OSError, ValueError) as exc:
            failures.append(collect_failure(complex_files.id, "sequence", exc))
    return sequences, failures
