"""Complexes to featurise: discovery in a PDBbind layout, a CSV manifest or `protein:ligand` pairs,
labels joined from index files, and ligand heavy atoms read with RDKit.

* PDBbind layout: any folder below the root holding `<id>_protein.pdb` and/or `<id>_pocket.pdb` and
  `<id>_ligand.sdf` and/or `<id>_ligand.mol2`. A folder with some but not all of these is reported
  as a failure.
* Manifest CSV: columns `id`, `protein`, `ligand`, optional `label`, `split`, `pocket`. Paths are
  relative to the manifest's folder. `protein` may be empty when `pocket` is given. A `.mol2` beside
  the `.sdf` ligand (same stem) is its fallback.
* Ids are lower-cased and must match `[a-z0-9][a-z0-9._-]*`; they are never used to build paths.
* Ligands: the first molecule of the SDF, sanitised; else the mol2, sanitised; else the same two
  with `sanitize=False` (many PDBbind SDFs fail sanitisation on charges or valences, and only
  coordinates and elements are used). Hydrogens and dummy atoms are dropped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from holoprot.errors import HoloprotError, InputError

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_STRUCTURE_SUFFIXES = ("_protein.pdb", "_pocket.pdb")
_LIGAND_SUFFIXES = ("_ligand.sdf", "_ligand.mol2")


@dataclass(frozen=True)
class ComplexFiles:
    """One protein–ligand complex: its files, and its label (−log10 M) and split part if known."""

    id: str
    protein: Path | None
    pocket: Path | None
    ligands: tuple[Path, ...]
    label: float | None = None
    split: str | None = None

    @property
    def structure_file(self) -> Path:
        """The file neighbourhoods are cut from: the full protein when present, else the pocket."""
        path = self.protein or self.pocket
        assert path is not None  # guaranteed by construction
        return path


@dataclass(frozen=True)
class Failure:
    """A complex that was skipped, the stage at which it failed and why (one line)."""

    id: str
    stage: str
    problem: str


@dataclass(frozen=True)
class Ligand:
    """Ligand heavy atoms: `coords` (L, 3) float64 Å, `element` (L,) '<U2' upper case."""

    coords: np.ndarray
    element: np.ndarray
    source: str


def check_id(raw: str, where: object) -> str:
    """Lower-cased complex id, or InputError if it has characters outside [a-z0-9._-]."""
    complex_id = str(raw).strip().lower()
    if not _ID.match(complex_id):
        raise InputError(where, f"invalid complex id {raw!r} (allowed: letters, digits, . _ -)")
    return complex_id


def _make_complex(
    complex_id: str,
    protein: Path | None,
    pocket: Path | None,
    ligands: Iterable[Path],
    **extra: object,
) -> ComplexFiles | Failure:
    ligands = tuple(ligands)
    if protein is None and pocket is None:
        return Failure(complex_id, "files", "no protein or pocket file")
    if not ligands:
        return Failure(complex_id, "files", "no ligand file (.sdf or .mol2)")
    missing = [p for p in (protein, pocket, *ligands) if p is not None and not p.is_file()]
    if missing:
        return Failure(complex_id, "files", f"file not found: {missing[0]}")
    return ComplexFiles(complex_id, protein, pocket, ligands, **extra)


def discover(root: str | Path) -> tuple[list[ComplexFiles], list[Failure]]:
    """Complexes of a PDBbind-layout folder (searched recursively), sorted by id."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data folder not found")
    groups: dict[tuple[Path, str], dict[str, Path]] = {}
    for path in root.rglob("*_*"):
        name = path.name.lower()
        for suffix in _STRUCTURE_SUFFIXES + _LIGAND_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix) and path.is_file():
                groups.setdefault((path.parent, name[: -len(suffix)]), {})[suffix] = path
    complexes: dict[str, ComplexFiles] = {}
    failures: list[Failure] = []
    for (folder, stem), files in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        try:
            complex_id = check_id(stem, folder / stem)
        except InputError as exc:
            failures.append(Failure(stem, "files", exc.problem))
            continue
        if complex_id in complexes:
            failures.append(Failure(complex_id, "files", f"duplicate id, also in {folder}"))
            continue
        made = _make_complex(
            complex_id,
            files.get("_protein.pdb"),
            files.get("_pocket.pdb"),
            [files[s] for s in _LIGAND_SUFFIXES if s in files],
        )
        if isinstance(made, Failure):
            failures.append(made)
        else:
            complexes[complex_id] = made
    return [complexes[i] for i in sorted(complexes)], failures


def _ligand_with_fallback(path: Path) -> list[Path]:
    mol2 = path.with_suffix(".mol2")
    if path.suffix.lower() == ".sdf" and mol2.is_file():
        return [path, mol2]
    return [path]


def read_manifest(path: str | Path) -> tuple[list[ComplexFiles], list[Failure]]:
    """Complexes listed in a manifest CSV (see the module docstring), in file order."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read manifest ({exc})") from None
    if not rows:
        raise InputError(path, "manifest has no rows")
    columns = {c.strip().lower() for c in rows[0] if c is not None}
    required = {"id", "ligand"}
    if not required <= columns or not {"protein", "pocket"} & columns:
        raise InputError(
            path, "manifest needs columns id, protein (or pocket), ligand[, label, split]"
        )
    base = path.parent
    complexes: list[ComplexFiles] = []
    failures: list[Failure] = []
    seen: set[str] = set()
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        complex_id = check_id(row["id"], f"{path}, line {line}")
        if complex_id in seen:
            raise InputError(path, f"line {line}: duplicate id {complex_id}")
        seen.add(complex_id)
        try:
            label = float(row["label"]) if row.get("label") else None
        except ValueError:
            raise InputError(path, f"line {line}: label {row['label']!r} is not a number") from None
        made = _make_complex(
            complex_id,
            base / row["protein"] if row.get("protein") else None,
            base / row["pocket"] if row.get("pocket") else None,
            _ligand_with_fallback(base / row["ligand"]) if row["ligand"] else [],
            label=label,
            split=row.get("split") or None,
        )
        (failures if isinstance(made, Failure) else complexes).append(made)
    return complexes, failures


def parse_pair(text: str) -> ComplexFiles:
    """A `protein_file:ligand_file` pair; a structure file named `*_pocket.*` is taken as a pocket.

    The id is the structure file name without extension and `_protein`/`_pocket`.
    """
    structure, sep, ligand = text.rpartition(":")
    if not sep or not structure or not ligand:
        raise InputError(text, "expected PROTEIN_FILE:LIGAND_FILE")
    structure_path, ligand_path = Path(structure), Path(ligand)
    stem = structure_path.name.split(".")[0]
    is_pocket = stem.lower().endswith("_pocket")
    for suffix in ("_protein", "_pocket"):
        stem = stem.removesuffix(suffix)
    made = _make_complex(
        check_id(stem, structure_path),
        None if is_pocket else structure_path,
        structure_path if is_pocket else None,
        _ligand_with_fallback(ligand_path),
    )
    if isinstance(made, Failure):
        raise InputError(text, made.problem)
    return made


def join_labels(
    complexes: Iterable[ComplexFiles], labels: Mapping[str, float]
) -> list[ComplexFiles]:
    """Complexes with `label` filled from `labels` (id → −log10 M) where they have none."""
    return [
        c if c.label is not None or c.id not in labels else replace(c, label=float(labels[c.id]))
        for c in complexes
    ]


def _read_rdkit(path: Path, sanitize: bool):
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        if path.suffix.lower() == ".mol2":
            return Chem.MolFromMol2File(str(path), sanitize=sanitize, removeHs=False)
        if path.suffix.lower() in (".sdf", ".mol"):
            supplier = Chem.SDMolSupplier(str(path), sanitize=sanitize, removeHs=False)
            return next(iter(supplier), None) if len(supplier) else None
        raise InputError(path, "ligand must be .sdf, .mol or .mol2")
    finally:
        RDLogger.EnableLog("rdApp.*")


def read_ligand(paths: Iterable[Path]) -> Ligand:
    """Heavy atoms of the first readable ligand file (see the module docstring for the order)."""
    paths = tuple(paths)
    for sanitize in (True, False):
        for path in paths:
            try:
                mol = _read_rdkit(path, sanitize)
            except (OSError, RuntimeError, ValueError):
                mol = None
            if mol is None or mol.GetNumConformers() == 0:
                continue
            heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
            if not heavy:
                continue
            coords = mol.GetConformer().GetPositions()[heavy]
            element = np.array(
                [mol.GetAtomWithIdx(i).GetSymbol().upper() for i in heavy], dtype="<U2"
            )
            how = path.name if sanitize else f"{path.name} (sanitize=False)"
            return Ligand(coords.astype(np.float64), element, how)
    names = ", ".join(p.name for p in paths)
    raise InputError(names, "no ligand with 3D heavy atoms could be read by RDKit")


def collect_failure(complex_id: str, stage: str, exc: Exception) -> Failure:
    """A Failure from an exception raised while processing one complex (first line of message)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not isinstance(exc, HoloprotError):
        text = f"{type(exc).__name__}: {text}"
    return Failure(complex_id, stage, text)
