"""Secondary structure of every amino-acid residue by DSSP (the ``mkdssp`` program, DSSP 4.x).

DSSP is the Debian package ``dssp`` (``make dssp`` installs it; no PyPI package ships DSSP 4 with
its 8 states). ``mkdssp`` assigns secondary structure from the backbone alone (N, CA, C, O; the
amide H is placed by DSSP itself), so each structure is handed to it as a small PDB file of its
backbone atoms, written from holoprot's own :class:`~holoprot.io.structure.Structure`: the residues
DSSP labels are then exactly the residues holoprot read (same model, same alternate locations),
whatever the input format. Chains get one-character names and residues sequential numbers in that
file (so long chain ids, large numbers and duplicated keys are no problem) and are mapped back;
modified amino acids are written as their standard parent (MSE as MET), which DSSP knows.

States (DSSP's 8, plus ``-`` for none): H α-helix, G 3₁₀-helix, I π-helix, P κ-helix (PPII),
E strand, B isolated bridge, T turn, S bend. :func:`three_state` maps H, G, I → helix (``H``),
E, B → strand (``E``), everything else → coil (``C``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import gemmi
import numpy as np

from holoprot.errors import HoloprotError
from holoprot.io.structure import Structure

#: The classic 8 states (``-`` is "none"); DSSP 4's κ-helix ``P`` is counted as ``-``.
EIGHT_STATES = ("H", "G", "I", "E", "B", "T", "S", "-")
THREE_STATES = ("H", "E", "C")
_TO_THREE = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}
_BACKBONE = ("N", "CA", "C", "O")
_CRYST1 = "CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1"
_THREE_LETTER = {
    gemmi.find_tabulated_residue(n).one_letter_code.upper(): n
    for n in ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
              "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
}  # fmt: skip
_CHAIN_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _parent(name: str) -> str:
    """Standard parent of an amino acid (MSE → MET, HYP → PRO; ALA if none): DSSP leaves out
    residues it does not know, and only the backbone and proline matter to it."""
    info = gemmi.find_tabulated_residue(name)
    code = info.one_letter_code.upper() if info is not None else " "
    return _THREE_LETTER.get(code, "ALA")


def mkdssp_path() -> str:
    """Path of the ``mkdssp`` executable; HoloprotError naming the fix if it is missing."""
    path = shutil.which("mkdssp")
    if path is None:
        raise HoloprotError("mkdssp not found: install DSSP 4 (`make dssp`, Debian package dssp)")
    return path


def dssp_version() -> str:
    """First line of ``mkdssp --version``, e.g. ``mkdssp version 4.2.2``."""
    run = subprocess.run([mkdssp_path(), "--version"], capture_output=True, text=True, timeout=60)
    return (run.stdout.strip().splitlines() or ["mkdssp (unknown version)"])[0]


def eight_state(states: np.ndarray) -> np.ndarray:
    """DSSP codes (N,) → the classic 8 states: κ-helix ``P`` (DSSP ≥ 4) becomes ``-``. Empty
    strings (no label) stay empty."""
    states = np.asarray(states, dtype="<U1").copy()
    states[states == "P"] = "-"
    return states


def three_state(states: np.ndarray) -> np.ndarray:
    """8-state DSSP codes (N,) → 3 states: H, G, I → ``H``; E, B → ``E``; else ``C``.
    Empty strings (no label) stay empty."""
    states = np.asarray(states, dtype=str)
    out = np.array([_TO_THREE.get(s, "C") for s in states.tolist()], dtype="<U1")
    out[states == ""] = ""
    return out


def backbone_pdb(structure: Structure) -> tuple[str, dict[tuple[str, int], int]]:
    """PDB text of the backbone atoms (N, CA, C, O) of the amino-acid residues of `structure`.

    Returns the text and {(chain, number) in the file: the structure's residue row}. Chains are
    named by rank (A, B, …), residues numbered 1, 2, … within a chain; chains after the 62nd are
    left out.
    """
    keep = (
        np.isin(structure.atom_name, _BACKBONE) & structure.is_amino_acid[structure.residue_index]
    )
    atoms = np.flatnonzero(keep)
    residues = np.unique(structure.residue_index[atoms])
    chain_rank = {c: i for i, c in enumerate(dict.fromkeys(structure.chain[residues].tolist()))}
    lines = [f"{'HEADER':<80}", f"{_CRYST1:<80}"]
    number: dict[int, tuple[str, int]] = {}
    per_chain: dict[str, int] = {}
    for r in residues.tolist():
        rank = chain_rank[structure.chain[r]]
        if rank < len(_CHAIN_NAMES):
            name = _CHAIN_NAMES[rank]
            per_chain[name] = per_chain.get(name, 0) + 1
            number[r] = (name, per_chain[name])
    serial = 0
    for a in atoms.tolist():
        r = int(structure.residue_index[a])
        if r not in number:
            continue
        serial += 1
        chain, seq = number[r]
        x, y, z = structure.coords[a]
        atom = structure.atom_name[a]
        lines.append(
            f"ATOM  {serial % 100000:5d}  {atom:<3} {_parent(structure.res_name[r])} {chain}"
            f"{seq:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          "
            f"{structure.element[a]:>2}  "
        )
    lines.append("END")
    return "\n".join(lines) + "\n", {key: r for r, key in number.items()}


def parse_dssp(text: str) -> dict[tuple[str, int], str]:
    """Classic DSSP output → {(chain, residue number): 8-state code} (``-`` for none); chain
    breaks (``!``) are skipped."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("  #  RESIDUE"))
    except StopIteration:
        raise HoloprotError("DSSP output has no residue table") from None
    states = {}
    for line in lines[start + 1 :]:
        if len(line) < 17 or line[13] == "!":
            continue
        state = line[16] if line[16] != " " else "-"
        states[(line[11], int(line[5:10]))] = state
    return states


def dssp_states(structure: Structure, timeout: float = 120.0) -> np.ndarray:
    """8-state DSSP code of every residue of `structure` (R,) ('<U1'); ``""`` where DSSP gives
    none (not an amino acid, no backbone, dropped by DSSP). Raises HoloprotError naming the file
    when mkdssp fails."""
    states = np.full(structure.n_residues, "", dtype="<U1")
    text, residue_of = backbone_pdb(structure)
    if not residue_of:
        return states
    with tempfile.TemporaryDirectory(prefix="holoprot-dssp-") as tmp:
        pdb, out = Path(tmp) / "in.pdb", Path(tmp) / "out.dssp"
        pdb.write_text(text)
        run = subprocess.run(
            [mkdssp_path(), "--output-format", "dssp", str(pdb), str(out)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if run.returncode != 0 or not out.is_file():
            message = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise HoloprotError(f"{structure.path}: mkdssp failed ({message})")
        assigned = parse_dssp(out.read_text())
    for key, state in assigned.items():
        if key in residue_of:
            states[residue_of[key]] = state
    return states


__all__ = [
    "EIGHT_STATES",
    "THREE_STATES",
    "backbone_pdb",
    "dssp_states",
    "dssp_version",
    "eight_state",
    "mkdssp_path",
    "parse_dssp",
    "three_state",
]
