"""cluster-cv: no protein in a test fold has >= 30 % identity to a protein in its training
folds, on the real binding-chain sequences of the tests/data/affinity complexes plus mutants of
them at known identities."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from holoprot.affinity import clusters as cl
from holoprot.affinity.dataset import discover

FIXTURE = Path(__file__).parent / "data" / "affinity"
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _mutant(sequence: str, fraction_kept: float, seed: int) -> str:
    """`sequence` with 1 − fraction_kept of its residues substituted (no indels)."""
    rng = np.random.default_rng(seed)
    out = list(sequence)
    for i in rng.choice(len(out), size=round((1 - fraction_kept) * len(out)), replace=False):
        out[i] = rng.choice([a for a in AMINO if a != out[i]])
    return "".join(out)


@pytest.fixture(scope="module")
def sequences():
    complexes, _ = discover(FIXTURE)
    real, failed = cl.complex_sequences(complexes)
    assert not failed and sorted(real) == ["1a28", "1gbt", "1hvr", "4zhl"]
    hvr, gbt = real["1hvr"][0], real["1gbt"][0]
    return real | {
        "1hvr-m60": (_mutant(hvr, 0.60, 1),),  # a close homologue of 1hvr
        "1gbt-m45": (_mutant(gbt, 0.45, 2),),  # a remote homologue of 1gbt, above 30 %
        "1gbt-m10": (_mutant(gbt, 0.10, 3),),  # unrelated to 1gbt by now
    }


def test_identity_is_from_a_real_alignment(sequences):
    hvr = sequences["1hvr"][0]
    aligner = cl.make_aligner()
    assert cl.sequence_identity(hvr, hvr, aligner) == 1.0
    assert 0.55 <= cl.sequence_identity(hvr, sequences["1hvr-m60"][0], aligner) <= 0.65
    # an insertion does not shift the rest out of register
    inserted = hvr[:40] + "GGGGSGGGGS" + hvr[40:]
    assert cl.sequence_identity(hvr, inserted, aligner) > 0.95
    # unrelated real chains (HIV protease, trypsin) are far below the threshold
    assert cl.complex_identity(sequences["1hvr"], sequences["1gbt"], aligner) < 0.2


def test_cluster_split_has_no_cross_fold_pair_above_the_threshold(sequences, tmp_path):
    made = cl.cluster_complexes(sequences, threshold=0.3, k=3, seed=0)
    assert made.fold["1hvr"] == made.fold["1hvr-m60"]
    assert made.fold["1gbt"] == made.fold["1gbt-m45"]
    assert made.cluster["1gbt"] != made.cluster["1gbt-m10"]
    aligner = cl.make_aligner()
    checked = 0
    for a, b in itertools.combinations(sorted(sequences), 2):
        if made.fold[a] != made.fold[b]:
            assert cl.complex_identity(sequences[a], sequences[b], aligner) < 0.3, (a, b)
            checked += 1
    assert checked >= 10
    assert len(set(made.fold.values())) == 3
    cl.save_clusters(made, tmp_path)
    assert cl.load_clusters(tmp_path) == made
    splits = cl.fold_splits(made, sorted(sequences))
    assert sorted(i for s in splits for i in s.test) == sorted(sequences)
    for split in splits:
        test_folds = {made.fold[i] for i in split.test}
        assert len(test_folds) == 1
        assert not test_folds & {made.fold[i] for i in split.train + split.val}


def _shared_kmers(sequences: dict[str, tuple[str, ...]], ids: list[str], k: int = 3) -> np.ndarray:
    """(n, n) fraction of the k-mers of the smaller complex that the other one has too: a cheap
    ranking of likely homologues, independent of the alignments."""
    index: dict[str, int] = {}
    rows = [
        [
            index.setdefault(s[j : j + k], len(index))
            for s in sequences[i]
            for j in range(len(s) - k + 1)
        ]
        for i in ids
    ]
    present = np.zeros((len(ids), len(index)), dtype=np.float32)
    for r, columns in enumerate(rows):
        present[r, columns] = 1.0
    sizes = present.sum(axis=1)
    return (present @ present.T) / np.minimum.outer(sizes, sizes)


def test_saved_benchmark_clusters_keep_every_similar_pair_in_one_fold():
    """The committed split of the 413 PDBbind complexes (benchmarks/affinity-clusters). Beyond
    its own pair list, identities are recomputed from the saved sequences with
    `complex_identity` for the cross-fold pairs most likely to reach the threshold: each
    complex's other-fold complex sharing the most 3-mers, the 40 highest cross-fold pairs on
    record, and 100 seeded random cross-fold pairs."""
    folder = Path(__file__).parents[1] / "benchmarks" / "affinity-clusters"
    made = cl.load_clusters(folder)
    assert len(made.fold) == 413 and made.threshold == 0.3 and made.k == 5
    similar = [(a, b) for (a, b), value in made.pairs.items() if value >= made.threshold]
    assert len(similar) > 100
    assert all(made.fold[a] == made.fold[b] for a, b in similar)
    assert all(made.cluster[a] == made.cluster[b] for a, b in similar)

    aligner = cl.make_aligner()
    rng = np.random.default_rng(0)
    for a, b in [similar[i] for i in rng.choice(len(similar), 20, replace=False)]:
        identity = cl.complex_identity(made.sequences[a], made.sequences[b], aligner)
        assert identity == pytest.approx(made.pairs[a, b], abs=1e-4), (a, b)

    ids = sorted(made.fold)
    fold = np.array([made.fold[i] for i in ids])
    shared = np.where(fold[:, None] == fold[None, :], -1.0, _shared_kmers(made.sequences, ids))
    nearest = {(ids[i], ids[int(np.argmax(shared[i]))]) for i in range(len(ids))}
    cross = sorted(
        (v, pair) for pair, v in made.pairs.items() if made.fold[pair[0]] != made.fold[pair[1]]
    )
    highest = {pair for _, pair in cross[-40:]}
    drawn: set[tuple[str, str]] = set()
    while len(drawn) < 100:
        a, b = (str(i) for i in rng.choice(ids, 2, replace=False))
        if made.fold[a] != made.fold[b]:
            drawn.add((a, b))
    candidates = nearest | highest | drawn
    unique = {tuple(sorted((made.sequences[a], made.sequences[b]))): (a, b) for a, b in candidates}
    too_close = []
    for a, b in unique.values():
        assert made.fold[a] != made.fold[b]
        identity = cl.complex_identity(made.sequences[a], made.sequences[b], aligner)
        if identity >= made.threshold:
            too_close.append((a, b, round(identity, 3)))
    assert len(unique) > 300
    assert not too_close, f"cross-fold pairs at or above {made.threshold:.0%}: {too_close}"
