"""Superposing search hits onto their query with the learned frames.

Each embedded residue has a learned frame F (3×3, rows x̂, ŷ, ẑ; `holoprot embed --frames`) that
is equivariant: rotating a structure by R (x' = R x about any point) turns F into F Rᵀ. Two
residues whose environments look alike have alike coordinates in their own frames,
F_q (x_q − c_q) ≈ F_h (x_h − c_h) with c the centre residue's Cα, so

    x ↦ R (x − c_h) + c_q,   R = F_qᵀ F_h   (`frame_rotation`)

carries the hit's environment onto the query's. No atom correspondence is needed (the hit may be
another residue type in another protein); the backbone RMSD after this superposition is compared
with that of the optimal (Kabsch) fit of the same backbone atoms.

    >>> from holoprot.search.superpose import Site, superpose
    >>> query = Site("1abc.pdb", "A", 45, frame=fq)            # fq: (3, 3) from the embeddings
    >>> env, results = superpose(query, [Site("2xyz.cif", "B", 12, frame=fh)])
    >>> results[0].environment.coords, results[0].rmsd_frame, results[0].rmsd_optimal

Units: coordinates in Å (float64), as read by `holoprot.io.structure.read_structure` (no waters,
no hydrogens; every chain, ligands and ions kept).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from holoprot.errors import HoloprotError, InputError
from holoprot.io.structure import Structure, read_structure

__all__ = [
    "BACKBONE",
    "Environment",
    "Site",
    "Skipped",
    "Superposition",
    "environment_text",
    "frame_rotation",
    "kabsch",
    "proper_frame",
    "rmsd",
    "superpose",
    "write_mmcif",
    "write_scripts",
]

#: Backbone atoms compared, per residue.
BACKBONE = ("N", "CA", "C", "O")
#: Residues i−2 … i+2 around the centre i.
WINDOW = 2
#: Default environment radius (Å): the embedding's neighbourhood radius.
RADIUS = 10.0


@dataclass(frozen=True)
class Site:
    """A residue of a structure file and its learned frame.

    Attributes:
        path: the structure file (PDB or mmCIF, gzipped or not).
        chain, residue_number, insertion_code: author identity, as in the embedding tables.
        model: the model number read (None: the first model).
        frame: (3, 3) learned frame, rows x̂, ŷ, ẑ.
    """

    path: str | os.PathLike
    chain: str
    residue_number: int
    insertion_code: str = ""
    model: int | None = None
    frame: np.ndarray | None = None

    def label(self) -> str:
        return f"{self.path}:{self.chain}:{self.residue_number}{self.insertion_code}"


@dataclass(frozen=True)
class Environment:
    """The atoms within `radius` Å of a residue's Cα (N atoms).

    Attributes:
        coords: (N, 3) float64, Å (moved onto the query for a hit).
        element, atom_name, chain, residue_number, insertion_code, residue_name, is_hetero:
            (N,) per-atom identity arrays.
        centre: (3,) the centre Cα, Å (for a hit: where it lands, i.e. the query's Cα).
    """

    coords: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    chain: np.ndarray
    residue_number: np.ndarray
    insertion_code: np.ndarray
    residue_name: np.ndarray
    is_hetero: np.ndarray
    centre: np.ndarray

    def __len__(self) -> int:
        return len(self.coords)


@dataclass(frozen=True)
class Superposition:
    """One hit moved onto the query: x ↦ rotation · x + translation.

    Attributes:
        site: the hit.
        environment: its environment in the query's coordinates.
        rotation: (3, 3) proper rotation applied (F_qᵀ F_h; refined: the Kabsch fit's on top).
        translation: (3,) Å.
        rmsd_frame: backbone RMSD (Å) after the frame superposition.
        rmsd_optimal: backbone RMSD (Å) after the optimal (Kabsch) fit of the same atoms.
        backbone_atoms: how many atom pairs the RMSDs compare (20: N, CA, C, O of residues
            i−2 … i+2 in both; else those of the centre residue both have).
    """

    site: Site
    environment: Environment
    rotation: np.ndarray
    translation: np.ndarray
    rmsd_frame: float
    rmsd_optimal: float
    backbone_atoms: int


@dataclass(frozen=True)
class Skipped:
    """A hit that could not be superposed (its structure file missing or unreadable)."""

    site: Site
    reason: str


def proper_frame(frame: np.ndarray) -> np.ndarray:
    """The proper rotation nearest to a (3, 3) frame (float64; polar decomposition). Learned
    frames are orthonormal to float32 rounding; this removes that rounding without breaking
    equivariance (the nearest rotation to F Rᵀ is that of F times Rᵀ)."""
    f = np.asarray(frame, dtype=np.float64)
    if f.shape != (3, 3) or not np.isfinite(f).all():
        raise HoloprotError(f"a frame must be 3×3 finite numbers, got shape {f.shape}")
    u, _, vt = np.linalg.svd(f)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def frame_rotation(frame_query: np.ndarray, frame_hit: np.ndarray) -> np.ndarray:
    """R = F_qᵀ F_h (3, 3), float64, proper: rotates the hit's environment (coordinates relative
    to its Cα) into the query's orientation. Frames are (3, 3), rows x̂, ŷ, ẑ."""
    return proper_frame(frame_query).T @ proper_frame(frame_hit)


def kabsch(mobile: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The proper rotation R (3, 3) and translation t (3,) minimising ‖R·mobile + t − target‖
    over paired points (n, 3), Å."""
    a = np.asarray(mobile, np.float64)
    b = np.asarray(target, np.float64)
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    h = (a - ca).T @ (b - cb)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, cb - r @ ca


def rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square distance (Å) between paired points (n, 3)."""
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=1))))


# ---- reading residues ---------------------------------------------------------------------------
class _Read:
    """A structure with the lookups the superposition needs."""

    def __init__(self, st: Structure) -> None:
        self.st = st
        self.index: dict[tuple[str, int, str], list[int]] = {}
        for r, key in enumerate(zip(st.chain, st.seq_num.tolist(), st.icode, strict=True)):
            self.index.setdefault((str(key[0]), key[1], str(key[2])), []).append(r)
        self.atoms: dict[tuple[int, str], int] = {}
        for a in range(st.n_atoms - 1, -1, -1):
            self.atoms[(int(st.residue_index[a]), str(st.atom_name[a]))] = a

    def residue(self, site: Site) -> int:
        key = (site.chain, int(site.residue_number), site.insertion_code)
        r = self._with_ca(key)
        if r is None:
            raise InputError(site.label(), "no such residue with a Cα atom")
        return r

    def _with_ca(self, key: tuple[str, int, str]) -> int | None:
        # a residue number may be shared (a ligand numbered like an amino acid): prefer the one
        # with a CA atom that is an amino acid
        hits = [r for r in self.index.get(key, []) if (r, "CA") in self.atoms]
        hits.sort(key=lambda r: not self.st.is_amino_acid[r])
        return hits[0] if hits else None

    def ca(self, r: int) -> np.ndarray:
        return self.st.coords[self.atoms[(r, "CA")]]

    def backbone(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(2·WINDOW+1, 4, 3) coordinates of N, CA, C, O of residues i−2 … i+2 (same chain,
        consecutive numbering, no insertion code but the centre's) and a (…, 4) presence mask."""
        st = self.st
        size = 2 * WINDOW + 1
        xyz = np.zeros((size, len(BACKBONE), 3))
        have = np.zeros((size, len(BACKBONE)), bool)
        chain, num = str(st.chain[r]), int(st.seq_num[r])
        for k, d in enumerate(range(-WINDOW, WINDOW + 1)):
            rr = r if d == 0 else self._with_ca((chain, num + d, ""))
            if rr is None or (d != 0 and not st.is_amino_acid[rr]):
                continue
            for j, name in enumerate(BACKBONE):
                a = self.atoms.get((rr, name))
                if a is not None:
                    xyz[k, j], have[k, j] = st.coords[a], True
        return xyz, have

    def environment(self, r: int, radius: float) -> Environment:
        st = self.st
        centre = self.ca(r)
        near = np.flatnonzero(np.sum((st.coords - centre) ** 2, axis=1) <= radius * radius)
        res = st.residue_index[near]
        return Environment(
            coords=st.coords[near],
            element=st.element[near],
            atom_name=st.atom_name[near],
            chain=st.chain[res].astype(str),
            residue_number=st.seq_num[res],
            insertion_code=st.icode[res],
            residue_name=st.res_name[res],
            is_hetero=st.is_hetero[res],
            centre=centre.copy(),
        )


def _read(site: Site, cache: dict) -> _Read:
    key = (os.fspath(site.path), site.model)
    if key not in cache:
        cache[key] = _Read(read_structure(site.path, model=site.model))
    return cache[key]


def _pairs(
    q: tuple[np.ndarray, np.ndarray], h: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Backbone atom pairs: the whole window where both have it all, else the centre's atoms
    both have."""
    (qx, qm), (hx, hm) = q, h
    if qm.all() and hm.all():
        return qx.reshape(-1, 3), hx.reshape(-1, 3)
    both = qm[WINDOW] & hm[WINDOW]
    return qx[WINDOW][both], hx[WINDOW][both]


def _moved(env: Environment, rotation: np.ndarray, translation: np.ndarray) -> Environment:
    return replace(
        env,
        coords=env.coords @ rotation.T + translation,
        centre=rotation @ env.centre + translation,
    )


def superpose(
    query: Site,
    hits: Sequence[Site],
    *,
    radius: float = RADIUS,
    refine: bool = False,
    cache: dict | None = None,
) -> tuple[Environment, list[Superposition | Skipped]]:
    """Move each hit's environment onto the query's with their frames.

    Args:
        query: the query residue, with its frame.
        hits: hit residues, with their frames.
        radius: environment radius around each centre Cα, Å.
        refine: apply the optimal (Kabsch) backbone fit on top of the frame superposition (the
            RMSDs reported are the same either way).
        cache: a dict to reuse read structures across calls (keyed by path and model).

    Returns:
        the query's environment (its own coordinates) and, per hit in order, a `Superposition`
        or, when the hit's structure cannot be read, a `Skipped` (its reason one line).

    Raises:
        HoloprotError: the query cannot be read, lacks the residue or a frame; a hit lacks a frame.
    """
    cache = {} if cache is None else cache
    if query.frame is None:
        raise HoloprotError(f"{query.label()}: no frame")
    q = _read(query, cache)
    qr = q.residue(query)
    q_env = q.environment(qr, radius)
    q_backbone = q.backbone(qr)
    out: list[Superposition | Skipped] = []
    for site in hits:
        if site.frame is None:
            raise HoloprotError(f"{site.label()}: no frame")
        try:
            h = _read(site, cache)
            hr = h.residue(site)
        except InputError as exc:
            out.append(Skipped(site, str(exc)))
            continue
        rotation = frame_rotation(query.frame, site.frame)
        translation = q_env.centre - rotation @ h.ca(hr)
        target, mobile = _pairs(q_backbone, h.backbone(hr))
        placed = mobile @ rotation.T + translation
        r_fit, t_fit = kabsch(mobile, target)
        rmsd_frame = rmsd(placed, target)
        rmsd_optimal = rmsd(mobile @ r_fit.T + t_fit, target)
        if refine:
            rotation, translation = r_fit, t_fit
        env = _moved(h.environment(hr, radius), rotation, translation)
        out.append(
            Superposition(site, env, rotation, translation, rmsd_frame, rmsd_optimal, len(target))
        )
    return q_env, out


# ---- files --------------------------------------------------------------------------------------
def _add_model(st, number: int, env: Environment, b_factor: float) -> None:
    import gemmi

    model = gemmi.Model(number)
    chains: dict[str, gemmi.Chain] = {}
    last: tuple | None = None
    residue: gemmi.Residue | None = None
    for i in range(len(env)):
        key = (env.chain[i], int(env.residue_number[i]), env.insertion_code[i], env.residue_name[i])
        if key != last:
            if residue is not None:
                chains[last[0]].add_residue(residue)
            residue = gemmi.Residue()
            residue.name = str(key[3])
            residue.seqid = gemmi.SeqId(key[1], key[2] or " ")
            residue.het_flag = "H" if env.is_hetero[i] else "A"
            chains.setdefault(str(key[0]), gemmi.Chain(str(key[0])))
            last = key
        atom = gemmi.Atom()
        atom.name = str(env.atom_name[i])
        atom.element = gemmi.Element(str(env.element[i]))
        atom.pos = gemmi.Position(*map(float, env.coords[i]))
        atom.occ = 1.0
        atom.b_iso = b_factor
        residue.add_atom(atom)
    if residue is not None:
        chains[last[0]].add_residue(residue)
    for chain in chains.values():
        model.add_chain(chain)
    st.add_model(model)


def environment_text(env: Environment) -> tuple[str, str]:
    """One environment as (text, format) for a viewer (what the HTML report embeds): PDB, whose
    chain and residue numbers every viewer reads alike, where it fits (one-character chain ids,
    under 100,000 atoms); else mmCIF."""
    import gemmi

    st = gemmi.Structure()
    _add_model(st, 1, env, 0.0)
    st.setup_entities()
    if len(env) < 100_000 and all(len(str(c)) == 1 for c in set(env.chain.tolist())):
        return st.make_pdb_string(), "pdb"
    for number, entity in enumerate(st.entities, start=1):
        entity.name = str(number)
    return st.make_mmcif_document().as_string(), "cif"


def write_mmcif(
    path: str | os.PathLike,
    query: Environment,
    results: Sequence[tuple[int, Superposition]],
    name: str = "holoprot-superposition",
) -> None:
    """Write the query environment (model 1, B-factor 0) and each (rank, hit) (model rank+1,
    B-factor = rank) as one mmCIF file; atoms keep their chain ids, residue names and numbers."""
    import gemmi

    st = gemmi.Structure()
    st.name = name
    _add_model(st, 1, query, 0.0)
    for rank, result in results:
        _add_model(st, rank + 1, result.environment, float(rank))
    st.setup_entities()  # label_asym_id (subchains) and entities, as viewers expect
    for number, entity in enumerate(st.entities, start=1):
        entity.name = str(number)  # gemmi names ligand entities like 'XK2!'
    doc = st.make_mmcif_document()
    doc.write_file(os.fspath(path))


#: Colours of the hits in the scripts (the query is grey), cycled.
_COLOURS = ("green", "cyan", "magenta", "yellow", "salmon", "slate", "orange", "wheat", "violet")


def write_scripts(
    path: str | os.PathLike,
    cif_name: str,
    results: Sequence[tuple[int, Superposition]],
    which: str,
) -> None:
    """A PyMOL (`which` ``pml``) or ChimeraX (``cxc``) script, to sit beside the mmCIF file
    `cif_name`: load it, split the models (PyMOL objects ``query``, ``rank_K``; ChimeraX #1.1 =
    query, #1.(j+1) = j-th hit in the file, renamed ``rank_K``), colour by model (carbons; the
    query grey), show sticks and centre on the query."""
    obj = "superposition"
    lines = [
        f"# holoprot superposition: {cif_name} (model 1 = query, model K+1 = hit of rank K,"
        " B-factor = rank)",
        f"load {cif_name}, {obj}",
        f"create query, {obj}, 1, 1",
    ]
    cxc_lines = [
        f"# holoprot superposition: {cif_name} (#1.1 = query, then the hits by rank;"
        " B-factor = rank)",
        f"open {cif_name}",
        "rename #1.1 query",
        "color #1.1 gray",
    ]
    for state, (rank, _) in enumerate(results, start=2):
        colour = _COLOURS[(rank - 1) % len(_COLOURS)]
        lines += [
            f"create rank_{rank}, {obj}, {state}, 1",
            f"color {colour}, rank_{rank} and elem C",
        ]
        cxc_lines += [f"rename #1.{state} rank_{rank}", f"color #1.{state} {colour} target ac"]
    lines += [
        f"delete {obj}",
        "color grey70, query and elem C",
        "show sticks",
        "hide everything, hydro",
        "show spheres, inorganic",
        "orient query",
    ]
    cxc_lines += ["color byhetero", "show #1 atoms", "style #1 stick", "view #1.1"]
    if which not in ("pml", "cxc"):
        raise ValueError(f"unknown script kind {which!r}")
    text = "\n".join(lines if which == "pml" else cxc_lines) + "\n"
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
