"""Search queries: residues of structure files (embedded on the fly) or rows of embedding files.

A query is one of

* ``FILE:CHAIN:RESNUM[ICODE]`` — one residue (``1abc.pdb:A:45``, ``1abc.cif:A:45A``,
  ``x.pdb:B:-3``), author numbering as in the embedding tables;
* ``FILE:CHAIN`` — every residue of a chain;
* ``FILE`` — every residue of the file (its first model);

where FILE is a structure file (PDB or mmCIF, gzipped or not) or an embeddings Parquet file
(``.parquet``, made by `holoprot embed`, whose selected rows are taken as they are).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from holoprot.errors import HoloprotError, InputError
from holoprot.io.tables import vector_array
from holoprot.search.embeddings import HIT_COLUMNS, frame_matrix, latent_matrix

_RESIDUE = re.compile(r"(-?\d+)([A-Za-z]?)")
SYNTAX = "FILE, FILE:CHAIN or FILE:CHAIN:RESNUM[ICODE]"


@dataclass(frozen=True)
class Query:
    """A parsed query: the file and an optional chain / residue selector."""

    text: str
    path: Path
    chain: str | None = None
    residue_number: int | None = None
    insertion_code: str = ""

    @property
    def is_embeddings(self) -> bool:
        return self.path.name.lower().endswith(".parquet")


def parse_query(text: str) -> Query:
    """Split ``FILE[:CHAIN[:RESNUM[ICODE]]]``; the file part must exist (it may hold colons)."""
    if Path(text).is_file():
        return Query(text, Path(text))
    parts = text.split(":")
    if len(parts) >= 2 and Path(":".join(parts[:-1])).is_file():
        chain = parts[-1]
        if not chain:
            raise InputError(text, f"empty chain (query syntax: {SYNTAX})")
        return Query(text, Path(":".join(parts[:-1])), chain)
    if len(parts) >= 3 and Path(":".join(parts[:-2])).is_file():
        chain, residue = parts[-2], parts[-1]
        match = _RESIDUE.fullmatch(residue)
        if not chain or match is None:
            raise InputError(
                text, f"bad residue selector '{chain}:{residue}' (query syntax: {SYNTAX})"
            )
        return Query(text, Path(":".join(parts[:-2])), chain, int(match.group(1)), match.group(2))
    raise InputError(text, f"no such file (query syntax: {SYNTAX})")


def _select(query: Query, table: pa.Table) -> pa.Table:
    """The rows of `table` that `query` names; InputError when there are none."""
    if query.chain is None:
        selected = table
    else:
        mask = pc.equal(table.column("chain"), query.chain)
        if query.residue_number is not None:
            mask = pc.and_(mask, pc.equal(table.column("residue_number"), query.residue_number))
            mask = pc.and_(mask, pc.equal(table.column("insertion_code"), query.insertion_code))
        selected = table.filter(mask)
    if selected.num_rows == 0:
        what = "no residue" if query.chain is None else "no such residue with a Cα atom"
        if query.chain is not None and query.residue_number is None:
            what = f"no chain {query.chain} residue with a Cα atom"
        raise InputError(query.text, what)
    return selected


def _embeddings_rows(query: Query, weights_sha256: str) -> pa.Table:
    try:
        table = pq.read_table(query.path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(query.path, f"not a readable Parquet file ({exc})") from None
    if "latent" not in table.column_names:
        raise InputError(query.path, "no latent column (not a holoprot embedding?)")
    raw = (table.schema.metadata or {}).get(b"weights_sha256")
    sha = json.loads(raw) if raw else None
    if sha != weights_sha256:
        raise InputError(
            query.path,
            "made with other weights than the index (sha256"
            f" {str(sha)[:12]}… vs {weights_sha256[:12]}…); re-embed it with the index's weights",
        )
    return _select(query, table)


def query_table(
    queries: Sequence[str],
    weights_name: str,
    weights_sha256: str,
    *,
    weights: str | None = None,
    device: str = "auto",
    frames: bool = False,
) -> pa.Table:
    """Embed / read every query; one row per query residue.

    Args:
        queries: query strings (see the module docstring).
        weights_name, weights_sha256: the index's weights; structure queries are embedded with
            them, embedding files must have been made with them.
        weights: a weights name or .safetensors path to use instead of `weights_name` (its
            sha256 must still be the index's).
        device: the encoder's device.
        frames: add the ``frame`` column (9 floats, rows x̂, ŷ, ẑ): structure queries are
            embedded with frames, embedding files must have a ``frame`` column.

    Returns:
        ``query`` (the query string), the identity columns and ``latent`` (and ``frame``), in
        query order.
    """
    parsed = [parse_query(q) for q in queries]
    structures = [q for q in parsed if not q.is_embeddings]
    embedded: dict[Path, pa.Table] = {}
    if structures:
        embedded = _embed_files(structures, weights or weights_name, weights_sha256, device, frames)
    parts = []
    for q in parsed:
        rows = (
            _embeddings_rows(q, weights_sha256) if q.is_embeddings else _select(q, embedded[q.path])
        )
        columns = {"query": pa.array([q.text] * rows.num_rows, pa.string())}
        columns.update({name: rows.column(name) for name in HIT_COLUMNS})
        columns["latent"] = vector_array(latent_matrix(rows.column("latent")))
        if frames:
            if "frame" not in rows.column_names:
                raise InputError(q.path, "no frame column; embed it with `holoprot embed --frames`")
            columns["frame"] = vector_array(
                frame_matrix(q.path, rows.column("frame")).reshape(-1, 9)
            )
        parts.append(pa.table(columns))
    table = pa.concat_tables(parts)
    meta = {b"weights_sha256": json.dumps(weights_sha256).encode()}
    return table.replace_schema_metadata(meta)


def _embed_files(
    queries: list[Query], weights: str, weights_sha256: str, device: str, frames: bool = False
) -> dict[Path, pa.Table]:
    from holoprot.embedding.embedder import Embedder
    from holoprot.zernike.pipeline import FailedInput

    embedder = Embedder(weights, device)
    if embedder.weights_sha256 != weights_sha256:
        raise HoloprotError(
            f"weights {embedder.weights_name} (sha256 {embedder.weights_sha256[:12]}…) are not"
            f" the index's (sha256 {weights_sha256[:12]}…); pass the index's weights"
        )
    chains: dict[Path, set[str] | None] = {}
    for q in queries:
        wanted = chains.get(q.path, set())
        chains[q.path] = None if wanted is None or q.chain is None else wanted | {q.chain}
    out: dict[Path, pa.Table] = {}
    for path, wanted in chains.items():
        selected = sorted(wanted) if wanted else None
        for item in embedder.iter_files([path], chains=selected, frames=frames, workers=0):
            if isinstance(item, FailedInput):
                raise HoloprotError(item.message)
            out[path] = item
    return out
