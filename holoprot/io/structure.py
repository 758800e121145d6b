"""Read one model of a PDB or mmCIF file into flat NumPy arrays.

Policies (each is tested on a real file in ``tests/test_structure.py``):

* Formats: PDB (``.pdb``, ``.ent``) and mmCIF (``.cif``, ``.mmcif``), each optionally gzipped
  (``.gz``, or gzip content under any name). The format is sniffed from the content: a file
  whose first line that is neither blank nor a ``#`` comment starts with ``data_`` is mmCIF,
  anything else is PDB, whatever its extension says.
* Models: the first model by default; ``model=k`` picks the model whose number in the file is ``k``
  (PDB ``MODEL`` serial, mmCIF ``pdbx_PDB_model_num``; a file without model records has model 1).
* Alternate locations: per atom (same residue, same atom name) the altloc with the highest occupancy
  is kept, the first one in the file on ties (Biopython's ``DisorderedAtom`` behaviour). Atoms
  without an altloc are always kept. Gemmi's ``remove_alternative_conformations`` keeps the first
  altloc instead, so it is not used.
* Removed: waters (gemmi ``Residue.is_water``: HOH, WAT, DOD, ...), hydrogen and deuterium atoms.
  Kept: every other hetero group (ligands, ions, cofactors, modified residues) as atoms.
* Element: the full symbol from the element column, upper case (``SE`` stays ``SE``, a calcium ion
  is ``CA``), never truncated and never taken from the atom name. Where the PDB element column is
  blank, gemmi infers the element from the atom name at read time; that inference is accepted.
  PDB lines are read up to column 78: the formal charge (columns 79-80) is not used, and some
  tools write other numbers there, which would otherwise make the whole file unreadable.
* Residue identity: (author chain id, author residue number, insertion code, residue name); chain
  ids are strings and may have several characters in mmCIF. Residues keep file order (chain parts
  that reappear later in the file, e.g. ligands after ``TER``, are not merged back).
* Bad input raises :class:`~holoprot.errors.InputError` naming the file: missing or unreadable path,
  directory, empty file, corrupt gzip, binary content, text that is neither mmCIF nor holds a PDB
  ``ATOM``/``HETATM`` record, content gemmi cannot parse, a missing model, or no heavy non-water
  atom in the chosen model. A file with atoms but no amino acid is *not* an
  error here. Truncation: content that still parses (e.g. a PDB file cut between two lines, which
  needs no ``END`` record, or an mmCIF file cut after a complete line) is accepted as what it is.
  Errors: a last PDB ``ATOM``/``HETATM`` line that ends before the end of its coordinates
  (column 54), an mmCIF file that ends inside an ``_atom_site`` row (no final line end: the last
  value may be cut), and any other cut that gemmi rejects. Non-finite coordinates (``nan``) and
  names that are not UTF-8 text are errors too.
* Size: text (after gzip decompression) longer than :func:`max_structure_bytes` (2 GiB by
  default) is refused without being held whole in memory, so a gzip bomb costs at most that.
* Memory: the text, gemmi's structure (≈ 160 bytes per atom) and the arrays (≈ 52 bytes per atom)
  are held while reading, never Python objects per atom (atoms are converted in blocks). gemmi
  holds a whole mmCIF document besides (≈ 450 bytes per atom), so an ``_atom_site`` loop longer
  than ``_PIECE_BYTES`` is parsed in pieces of whole residues, each a small mmCIF document of the
  loop's header and its rows (same atoms, same order; a file that cannot be split so, e.g. a row
  over several lines, is parsed whole).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gemmi
import numpy as np

from holoprot.errors import InputError

__all__ = [
    "STANDARD_AMINO_ACIDS",
    "Structure",
    "detect_format",
    "max_structure_bytes",
    "read_structure",
    "structure_id",
]

STANDARD_AMINO_ACIDS = frozenset(
    ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE")
    + ("LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
)
_STRUCTURE_EXTENSIONS = (".pdb", ".ent", ".cif", ".mmcif")
_GZIP_MAGIC = b"\x1f\x8b"
_DEFAULT_MAX_STRUCTURE_BYTES = 2 << 30
_PDB_ATOM_RECORD = re.compile(rb"^(ATOM|HETATM)", re.MULTILINE)
_PDB_OTHER_RECORD = re.compile(
    rb"^(HEADER|TITLE |COMPND|SOURCE|REMARK|CRYST1|SEQRES|MODEL |HELIX |SHEET |EXPDTA|AUTHOR)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Structure:
    """One model of a structure file as flat arrays (N atoms, R residues).

    Atom arrays: ``coords`` (N, 3) float64, Å; ``element`` (N,) '<U2' upper-case symbol;
    ``atom_name`` (N,) '<U4' stripped name (wider if a name is longer, never truncated);
    ``residue_index`` (N,) int32 row in the residue table (atoms grouped by residue, residues in
    file order).
    Residue table: ``chain`` (R,) object, str author chain id; ``seq_num`` (R,) int32 author number;
    ``icode`` (R,) '<U1' insertion code ('' when none); ``res_name`` (R,) '<U5' (or wider);
    ``is_amino_acid`` (R,) bool (gemmi's tabulated amino acids, incl. MSE, SEP, ...);
    ``is_standard`` (R,) bool (one of the 20 standard amino acids);
    ``is_hetero`` (R,) bool (HETATM group).
    """

    id: str
    path: str
    model: int
    coords: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    residue_index: np.ndarray
    chain: np.ndarray
    seq_num: np.ndarray
    icode: np.ndarray
    res_name: np.ndarray
    is_amino_acid: np.ndarray
    is_standard: np.ndarray
    is_hetero: np.ndarray

    @property
    def n_atoms(self) -> int:
        return int(self.coords.shape[0])

    @property
    def n_residues(self) -> int:
        return int(self.res_name.shape[0])


def structure_id(path: str | os.PathLike) -> str:
    """File name without ``.gz`` and one structure extension: '1abc.pdb.gz' -> '1abc'."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for ext in _STRUCTURE_EXTENSIONS:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def detect_format(path: str | os.PathLike) -> Literal["pdb", "mmcif"]:
    """Format of a (possibly gzipped) structure file, judged by its content."""
    return _sniff(_read_text(path))


def read_structure(path: str | os.PathLike, model: int | None = None) -> Structure:
    """Read one model (the first by default) of a PDB/mmCIF file; see the module policies."""
    text = _read_text(path)
    pieces = _atom_site_pieces(text) if _sniff(text) == "mmcif" else None
    if pieces is not None:
        _check_truncation(path, text, "mmcif")
        models: Iterable[gemmi.Model] = _piece_models(path, text, *pieces, model)
    else:
        st = _parse(path, text)
        if len(st) == 0:
            raise InputError(path, "no atoms found")
        models = [_pick_model(path, st, model)]
    del text  # `_piece_models` holds it until its last piece is parsed
    try:
        return _to_arrays(path, models)
    except _Unsplittable:  # a piece gemmi rejects: the whole file says why, or reads
        return _whole(path, model)
    except UnicodeDecodeError:
        raise InputError(
            path, "bytes that are not UTF-8 text in chain, residue or atom names"
        ) from None


def _whole(path: str | os.PathLike, model: int | None) -> Structure:
    """`read_structure` with the file parsed as one gemmi document."""
    st = _parse(path, _read_text(path))
    if len(st) == 0:
        raise InputError(path, "no atoms found")
    try:
        return _to_arrays(path, [_pick_model(path, st, model)])
    except UnicodeDecodeError:
        raise InputError(
            path, "bytes that are not UTF-8 text in chain, residue or atom names"
        ) from None


def max_structure_bytes() -> int:
    """The largest structure text read, in bytes (after decompression): 2 GiB, or the environment
    variable ``HOLOPROT_MAX_STRUCTURE_BYTES``. The largest PDB entries are a few hundred MB of
    mmCIF; the bound stops a gzip bomb (a small file that inflates without end) from filling
    memory."""
    text = os.environ.get("HOLOPROT_MAX_STRUCTURE_BYTES")
    if text is None:
        return _DEFAULT_MAX_STRUCTURE_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError("HOLOPROT_MAX_STRUCTURE_BYTES", f"{text!r} is not a positive integer")
    return value


def _read_text(path: str | os.PathLike) -> bytes:
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file")
    if p.is_dir():
        raise InputError(path, "is a directory, not a structure file")
    limit = max_structure_bytes()
    try:
        if p.stat().st_size > limit:
            raise InputError(path, size_limit_message(limit))
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                data = stream.read(limit + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(path, f"corrupt gzip data ({exc})") from None
        if len(data) > limit:
            raise InputError(path, f"gzip content inflates to {size_limit_message(limit)}")
    if not data or data.isspace():  # (no stripped copy of a text of hundreds of MB)
        raise InputError(path, "empty file")
    if b"\x00" in data or _looks_binary(data):
        raise InputError(path, "binary content, not a PDB or mmCIF file")
    return data


def size_limit_message(limit: int) -> str:
    """What a structure past `limit` bytes is told (see :func:`max_structure_bytes`)."""
    return (
        f"more than {limit:,} bytes (raise HOLOPROT_MAX_STRUCTURE_BYTES to read larger structures)"
    )


def _looks_binary(data: bytes) -> bool:
    head = data[:4096]
    printable = sum(32 <= b < 127 or b in (9, 10, 12, 13) for b in head)
    return printable < 0.95 * len(head)


def _sniff(data: bytes) -> Literal["pdb", "mmcif"]:
    for line in data[:65536].splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        return "mmcif" if stripped.startswith(b"data_") else "pdb"
    return "mmcif" if b"\n_atom_site." in data else "pdb"


def _parse(path: str | os.PathLike, data: bytes) -> gemmi.Structure:
    fmt = _sniff(data)
    if fmt == "pdb" and not _PDB_ATOM_RECORD.search(data):
        if _PDB_OTHER_RECORD.search(data):
            raise InputError(path, "no atoms found (PDB records, but no ATOM/HETATM record)")
        raise InputError(path, "not a PDB or mmCIF file (no ATOM/HETATM record, no data_ block)")
    _check_truncation(path, data, fmt)
    try:
        if fmt == "mmcif":
            doc = gemmi.cif.read_string(data.decode("latin-1"))
            blocks = [b for b in doc if b.find_mmcif_category("_atom_site.")]
            if not blocks:
                raise InputError(path, "mmCIF file without an _atom_site table")
            return gemmi.make_structure_from_block(blocks[0])
        # Columns 79-80 (formal charge) are not used and are garbage in some tools' output
        # (e.g. BM5 "matched" files): read each line only up to column 78.
        return gemmi.read_pdb_string(data, max_line_length=78)
    except (RuntimeError, ValueError, IndexError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(path, f"cannot parse as {fmt.upper()}: {reason}") from None


def _check_truncation(path: str | os.PathLike, data: bytes, fmt: str) -> None:
    """Reject a file that ends inside an atom record (see the truncation policy)."""
    end = len(data)
    while end and data[end - 1] in b"\r\n":
        end -= 1
    last = data[data.rfind(b"\n", 0, end) + 1 : end]
    if not last.startswith((b"ATOM", b"HETATM")):
        return
    if fmt == "pdb" and len(last.rstrip()) < 54:
        raise InputError(path, "truncated: last ATOM/HETATM record ends before its coordinates")
    if fmt == "mmcif" and not data.endswith((b"\n", b"\r")):
        raise InputError(path, "truncated: file ends inside an _atom_site row")


def _pick_model(path: str | os.PathLike, st: gemmi.Structure, model: int | None) -> gemmi.Model:
    if model is None:
        return st[0]
    for m in st:
        if m.num == model:
            return m
    nums = ", ".join(str(m.num) for m in st)
    raise InputError(path, f"has no model {model} ({len(st)} model(s): {nums})")


_residue_kind: dict[str, tuple[bool, bool]] = {}


def _kind(name: str) -> tuple[bool, bool]:
    """(is_amino_acid, is_standard) for a residue name, cached."""
    kind = _residue_kind.get(name)
    if kind is None:
        info = gemmi.find_tabulated_residue(name)
        is_aa = bool(info is not None and info.is_amino_acid())
        kind = (is_aa, name in STANDARD_AMINO_ACIDS)
        _residue_kind[name] = kind
    return kind


def _keep_atoms(residue: gemmi.Residue) -> list[gemmi.Atom]:
    """Heavy atoms of a residue with one altloc per atom name (highest occupancy, first on ties)."""
    atoms = [a for a in residue if not a.is_hydrogen()]
    if not any(a.has_altloc() for a in atoms):
        return atoms
    best: dict[str, int] = {}
    for i, a in enumerate(atoms):
        if a.has_altloc():
            j = best.get(a.name)
            if j is None or a.occ > atoms[j].occ:
                best[a.name] = i
    chosen = set(best.values())
    return [a for i, a in enumerate(atoms) if not a.has_altloc() or i in chosen]


def _strings(values: list[str], width: int) -> np.ndarray:
    """Unicode array at least ``width`` wide, wider rather than truncating long names."""
    return np.asarray(values, dtype=f"<U{max([width, *map(len, set(values))])}")


#: Atoms converted from gemmi objects to NumPy arrays at once: Python lists cost ≈ 300 bytes per
#: atom, so they never hold more than a block.
_BLOCK_ATOMS = 65536


class _Columns:
    """The atom and residue columns of `Structure`, gathered from gemmi models a block of about
    `_BLOCK_ATOMS` atoms at a time (lists for the block being filled, arrays for the others)."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []
        self.n_residues = 0  # residues in the blocks
        self._lists()

    def _lists(self) -> None:
        self.xyz: list[list[float]] = []
        self.elements: list[str] = []
        self.names: list[str] = []
        self.res_of_atom: list[int] = []
        self.chains: list[str] = []
        self.seq_nums: list[int] = []
        self.icodes: list[str] = []
        self.res_names: list[str] = []
        self.hetero: list[bool] = []

    def add(self, gmodel: gemmi.Model) -> None:
        for chain in gmodel:
            chain_name = chain.name
            for residue in chain:
                if residue.is_water():
                    continue
                atoms = _keep_atoms(residue)
                if not atoms:
                    continue
                r = self.n_residues + len(self.res_names)
                for a in atoms:
                    self.xyz.append(a.pos.tolist())
                    self.elements.append(a.element.name)
                    self.names.append(a.name)
                self.res_of_atom.extend([r] * len(atoms))
                seqid = residue.seqid
                self.chains.append(chain_name)
                self.seq_nums.append(seqid.num)
                self.icodes.append(seqid.icode.strip())
                self.res_names.append(residue.name)
                self.hetero.append(residue.het_flag == "H")
                if len(self.xyz) >= _BLOCK_ATOMS:
                    self._flush()

    def _flush(self) -> None:
        if not self.res_names:
            return
        kinds = np.array([_kind(n) for n in self.res_names], dtype=bool).reshape(-1, 2)
        self.blocks.append(
            {
                "coords": np.asarray(self.xyz, dtype=np.float64).reshape(-1, 3),
                "element": np.char.upper(np.asarray(self.elements, dtype="<U2")),
                "atom_name": _strings(self.names, 4),
                "residue_index": np.asarray(self.res_of_atom, dtype=np.int32),
                "chain": np.asarray(self.chains, dtype=object),
                "seq_num": np.asarray(self.seq_nums, dtype=np.int32),
                "icode": np.asarray(self.icodes, dtype="<U1"),
                "res_name": _strings(self.res_names, 5),
                "is_amino_acid": kinds[:, 0].copy(),
                "is_standard": kinds[:, 1].copy(),
                "is_hetero": np.asarray(self.hetero, dtype=bool),
            }
        )
        self.n_residues += len(self.res_names)
        self._lists()

    def arrays(self) -> dict[str, np.ndarray]:
        """Every column, the blocks joined (empty when no atom was added)."""
        self._flush()
        blocks, self.blocks = self.blocks, []
        if len(blocks) == 1:
            return blocks[0]
        return {k: np.concatenate([b[k] for b in blocks]) for k in (blocks[0] if blocks else {})}


def _to_arrays(path: str | os.PathLike, gmodels: Iterable[gemmi.Model]) -> Structure:
    """A `Structure` of the given gemmi models' atoms (one model, or its pieces in file order)."""
    columns = _Columns()
    number = None
    for gmodel in gmodels:
        number = int(gmodel.num) if number is None else number
        columns.add(gmodel)
        del gmodel  # a piece's structure goes before the next one is parsed
    arrays = columns.arrays()
    if not arrays:
        raise InputError(path, f"no atoms in model {number} besides waters and hydrogens")
    coords = arrays["coords"]
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if len(bad):
        r = arrays["residue_index"][bad[0]]
        raise InputError(
            path,
            f"non-finite coordinates for atom {arrays['atom_name'][bad[0]]} of"
            f" {arrays['res_name'][r]} {arrays['chain'][r]}{arrays['seq_num'][r]}"
            f"{arrays['icode'][r]} ({len(bad)} atom(s) in all)",
        )
    return Structure(id=structure_id(path), path=str(path), model=number, **arrays)


#: mmCIF ``_atom_site`` rows (bytes of text) parsed at once: about 45,000 atoms, whose gemmi
#: document and structure take about 40 MB.
_PIECE_BYTES = 4 << 20

_ATOM_SITE_LOOP = re.compile(rb"^loop_[ \t]*\r?\n((?:[ \t]*_atom_site\.\S+[ \t]*\r?\n)+)", re.M)
#: What ends a loop's rows (a line starting a category, loop, block or comment)...
_LOOP_END = re.compile(rb"^[ \t]*(?:#|_|loop_|data_|save_|global_|stop_)", re.M)
#: ...and what may follow it when the loop has really ended (not a comment inside the loop).
_AFTER_LOOP = re.compile(rb"(?:[ \t]*(?:#[^\n]*)?\r?\n)*(?:[ \t]*(?:_|loop_|data_|save_)|\Z)")
_DATA_BLOCK = re.compile(rb"^data_", re.M)
_TEXT_FIELD = re.compile(rb"^;", re.M)
#: A CIF value: quoted (the quote closes before whitespace), or a run of non-blanks.
_VALUE = re.compile(rb"""'.*?'(?=\s|$)|".*?"(?=\s|$)|\S+""")
#: Rows that differ in one of these columns belong to different residues for gemmi.
_NEW_RESIDUE = ("pdbx_PDB_model_num", "auth_asym_id", "auth_seq_id", "pdbx_PDB_ins_code")


class _Unsplittable(Exception):
    """A piece of an mmCIF file that gemmi cannot parse alone."""


def _atom_site_pieces(data: bytes) -> tuple[bytes, list[tuple[int, int]]] | None:
    """For an mmCIF file of one data block whose ``_atom_site`` loop holds more than
    `_PIECE_BYTES` of rows, one row per line: the start of a document of the loop's header and
    the (start, end) of pieces of about `_PIECE_BYTES` of its rows each, cut between residues;
    None for any other file (parsed whole)."""
    header = _ATOM_SITE_LOOP.search(data)
    if header is None or len(_DATA_BLOCK.findall(data, 0, header.start())) != 1:
        return None
    names = [line.strip()[len(b"_atom_site.") :] for line in header.group(1).splitlines()]
    key = [names.index(n.encode()) for n in _NEW_RESIDUE if n.encode() in names]
    if not {b"auth_asym_id", b"auth_seq_id"} <= set(names):
        return None
    begin = header.end()
    stop = _LOOP_END.search(data, begin)
    end = len(data) if stop is None else stop.start()
    if end - begin <= _PIECE_BYTES or _TEXT_FIELD.search(data, begin, end):
        return None
    if data[end - 1 : end] != b"\n":
        return None
    if not _AFTER_LOOP.match(data, end) or _DATA_BLOCK.search(data, end):
        return None
    spans, start = [], begin
    while end - start > _PIECE_BYTES:
        cut = _residue_start(data, data.index(b"\n", start + _PIECE_BYTES) + 1, end, key, names)
        if cut is None:
            return None
        if cut >= end:
            break
        spans.append((start, cut))
        start = cut
    spans.append((start, end))
    return b"data_piece\n" + header.group(0), spans


def _residue_start(data: bytes, at: int, end: int, key: list[int], names: list) -> int | None:
    """The first line start at or after `at` (a line start) whose row begins a residue; None
    where a row is not one line of the loop's columns."""
    before = _row_key(data, data.rindex(b"\n", 0, at - 1) + 1, key, len(names))
    while at < end:
        here = _row_key(data, at, key, len(names))
        if before is None or here is None:
            return None
        if here != before:
            return at
        before = here
        at = data.index(b"\n", at) + 1
    return end


def _row_key(data: bytes, at: int, key: list[int], n_columns: int) -> tuple | None:
    """The residue-identifying values of the row on the line starting at `at`."""
    line = data[at : data.index(b"\n", at)]
    values = _VALUE.findall(line)
    if len(values) != n_columns:
        return None
    return tuple(values[i] for i in key)


def _piece_models(
    path: str | os.PathLike,
    data: bytes,
    head: bytes,
    spans: list[tuple[int, int]],
    model: int | None,
) -> Iterator[gemmi.Model]:
    """The chosen model's part of each piece `head` + ``data[start:end]`` (the first model of
    the first piece by default), each piece parsed when the previous one's atoms are
    converted."""
    seen: list[int] = []
    for start, end in spans:
        text = (head + data[start:end]).decode("latin-1")
        try:
            st = gemmi.make_structure_from_block(gemmi.cif.read_string(text)[0])
        except (RuntimeError, ValueError, IndexError) as exc:
            raise _Unsplittable from exc
        del text
        numbers = [gmodel.num for gmodel in st]
        model = numbers[0] if model is None else model
        seen += [n for n in numbers if n not in seen]
        if model in numbers:
            yield st[numbers.index(model)]
        del st  # (and the caller its model) before the next piece is parsed
    if model not in seen:
        nums = ", ".join(map(str, seen))
        raise InputError(path, f"has no model {model} ({len(seen)} model(s): {nums})")
