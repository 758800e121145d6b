"""Write weights/training-groups.csv: the group, pinned split and source set of every training file.

The split of the first weights (BM5 + extras, 80/10/10 by residues over groups, seed 0) is
recomputed exactly and pinned, so their test groups stay held out; each new set is then split
80/10/10 over its own groups (seed 0), so every set contributes held-out groups. Groups:

* BM5 (``data/structures-matched``) and extras: first four characters of the structure id, with
  1BD2 and 3KPR in 1AKJ's group (they share its MHC/β2m chains), as for the first weights;
* PoseBusters, nanobodies, BM5.5: the PDB id (first four characters); DIPS: the PDB id, characters
  4–7 of the file name (``a9_1a95.pdb1_3.dill_l_b_COMPLEX`` → 1A95). PDB ids are compared
  upper-case, so an entry that is also a BM5 complex (e.g. nanobody 1KXQ) joins that complex's
  group and split, and an id found in two new sets is one group (split with the set where it
  first appears).

Usage (the cache holds the residues of every file, e.g. the one `holoprot train` builds):

    python weights/training_groups.py --cache runs/cache-all --out weights/training-groups.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from holoprot.training.dataset import load_dataset, split_groups

#: (set name, folder fragment of its files' source paths), first match wins.
SETS = (
    ("bm5", "structures-matched"),
    ("extra", "extra-structures"),
    ("posebusters", "posebusters"),
    ("nanobodies", "nanobodies"),
    ("dips", "dips-test"),
    ("bm55", "bm55-new"),
)
OLD_SETS = ("bm5", "extra")
OLD_MAPPING = {"1BD2": "1AKJ", "3KPR": "1AKJ"}


def file_set(source_path: str) -> str:
    """Set name of a training file from its path."""
    parts = Path(source_path).parts
    for name, folder in SETS:
        if folder in parts:
            return name
    raise ValueError(f"{source_path}: not in any known training set")


def pdb_group(structure_id: str, set_name: str) -> str:
    """Group of a file of a new set: its PDB id, upper-case."""
    return (structure_id[3:7] if set_name == "dips" else structure_id[:4]).upper()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="coefficient cache of all training files")
    parser.add_argument("--out", default="weights/training-groups.csv")
    args = parser.parse_args()

    index = load_dataset(args.cache).index
    ids = np.asarray(index.column("structure_id").to_pylist(), dtype=object)
    sources = index.column("source_path").to_pylist()
    sets = np.array([file_set(s) for s in sources], dtype=object)

    old = np.isin(sets, OLD_SETS)
    groups = np.empty(len(ids), dtype=object)
    groups[old] = [OLD_MAPPING.get(i, i[:4]) for i in ids[old]]
    split = np.empty(len(ids), dtype=object)
    split[old] = split_groups(groups[old], seed=0)
    old_split = dict(zip(groups[old], split[old], strict=True))
    old_upper = {g.upper(): g for g in old_split}

    new_groups = [pdb_group(i, s) for i, s in zip(ids[~old], sets[~old], strict=True)]
    groups[~old] = [old_upper.get(g, g) for g in new_groups]
    home: dict[str, str] = {}
    for g, s in zip(groups[~old], sets[~old], strict=True):
        home.setdefault(g, s)
    for name, _ in SETS:
        rows = np.flatnonzero(~old & (sets == name))
        free = rows[[groups[r] not in old_split and home[groups[r]] == name for r in rows]]
        if len(free):
            split[free] = split_groups(groups[free], seed=0)
    joined = np.flatnonzero(~old & np.isin(groups, list(old_split)))
    split[joined] = [old_split[g] for g in groups[joined]]
    late = np.flatnonzero(split == None)  # noqa: E711 - groups first seen in an earlier set
    group_split = {g: s for g, s in zip(groups, split, strict=True) if s is not None}
    split[late] = [group_split[g] for g in groups[late]]

    seen: dict[str, tuple[str, str, str]] = {}
    for sid, g, s, name in zip(ids, groups, split, sets, strict=True):
        seen.setdefault(sid, (g, s, name))
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["structure_id", "group", "split", "set"])
        for sid, (g, s, name) in seen.items():
            writer.writerow([sid, g, s, name])
    for name, _ in SETS:
        sel = sets == name
        counts = {s: int(np.sum(split[sel] == s)) for s in ("train", "val", "test")}
        print(f"{name:12s} residues {int(sel.sum()):7d} {counts}")
    print(f"wrote {len(seen)} structures to {args.out}")


if __name__ == "__main__":
    main()
