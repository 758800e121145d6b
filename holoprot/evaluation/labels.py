"""Per-row labels of the probes: the centre residue's type and its DSSP secondary structure.

Labels are strings, one per row of a dataset index (N,); ``""`` means no label (the row is left
out of that probe and counted).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from holoprot.errors import HoloprotError
from holoprot.evaluation.dssp import dssp_states
from holoprot.io.structure import Structure, read_structure

#: The 20 standard amino acids: the classes of the residue-type probe.
STANDARD_AMINO_ACIDS = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip


def residue_type_labels(names: np.ndarray) -> np.ndarray:
    """Residue names (N,) → the same names where they are in :data:`STANDARD_AMINO_ACIDS`, else
    ``""``."""
    names = np.asarray(names, str)
    return np.where(np.isin(names, STANDARD_AMINO_ACIDS), names, "")


def match_states(
    structure: Structure,
    states: np.ndarray,
    chain: np.ndarray,
    number: np.ndarray,
    icode: np.ndarray,
) -> np.ndarray:
    """Per-residue `states` (R,) of `structure` → the rows given by (chain, residue number,
    insertion code) (N,); ``""`` where no amino-acid residue of the structure has that key, or
    more than one does (never guessed)."""
    table: dict[tuple[str, int, str], str] = {}
    seen: set[tuple[str, int, str]] = set()
    for r in np.flatnonzero(structure.is_amino_acid).tolist():
        key = (str(structure.chain[r]), int(structure.seq_num[r]), str(structure.icode[r]))
        table[key] = "" if key in seen else str(states[r])
        seen.add(key)
    return np.array(
        [
            table.get((str(c), int(n), str(i)), "")
            for c, n, i in zip(chain.tolist(), number.tolist(), icode.tolist(), strict=True)
        ],
        dtype="<U1",
    )


def secondary_structure_labels(
    index: pa.Table, rows: np.ndarray, model: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """DSSP 8-state code of the centre residue of each of `rows` of a dataset index (N,) ('<U1',
    ``""`` for no label), running DSSP once per file of those rows. Returns the codes and the
    messages of the files that could not be read or labelled (their rows get ``""``)."""
    rows = np.asarray(rows)
    take = index.take(pa.array(rows, pa.int64()))
    paths = take.column("source_path").to_numpy(zero_copy_only=False).astype(str)
    chain = take.column("chain").to_numpy(zero_copy_only=False)
    number = take.column("residue_number").to_numpy()
    icode = take.column("insertion_code").to_numpy(zero_copy_only=False)
    labels = np.full(len(rows), "", dtype="<U1")
    failed = []
    for path in np.unique(paths).tolist():
        sel = np.flatnonzero(paths == path)
        try:
            structure = read_structure(path, model=model)
            states = dssp_states(structure)
        except HoloprotError as exc:
            failed.append(str(exc))
            continue
        labels[sel] = match_states(structure, states, chain[sel], number[sel], icode[sel])
    return labels, failed


__all__ = [
    "STANDARD_AMINO_ACIDS",
    "match_states",
    "residue_type_labels",
    "secondary_structure_labels",
]
