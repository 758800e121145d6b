"""
Search for similar environments, and superpose them
===================================================

Residues whose surroundings look alike have nearby latents, whatever their protein, chain or
numbering. Here every residue of the bundled structures goes into a search index, and the
catalytic Asp102 of urokinase (uPA, 4ZHL chain U) is the query: its nearest environment in
another protein is the catalytic Asp102 of trypsin (1GBT), another serine protease. The hits are
then moved onto the query with the model's learned frames, with no atom correspondence, and
written for PyMOL, ChimeraX and a web browser.

Files written to ``$HOLOPROT_EXAMPLES_OUT`` (default ``out/examples/``):
``02_search_and_superpose_1.png`` (distances from the query to every residue),
``02_search_and_superpose_2.png`` (two superposed environments, in 2D),
``02_search_and_superpose.parquet`` (the embeddings),
``02_search_and_superpose.cif``, ``.pml``, ``.cxc`` (the superposition for a viewer) and
``02_search_and_superpose.html`` (an interactive report that opens offline).
"""

# %%
# Embed and index
# ---------------
# ``frames=True`` keeps each residue's learned frame (3×3, rows x̂, ŷ, ẑ), which the
# superposition needs. The index reads embedding files written by ``holoprot embed`` (or, as
# here, the same table written with pyarrow); below 50,000 residues it is an exact search by
# cosine distance 1 − cos θ between latents.

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

import holoprot
from holoprot.search.report import ReportEntry, ReportQuery, write_report
from holoprot.search.superpose import (
    Environment,
    Site,
    Superposition,
    environment_text,
    superpose,
    write_mmcif,
    write_scripts,
)

try:
    HERE = Path(__file__).resolve().parent  # this script's folder, examples/
except NameError:  # sphinx-gallery runs each example from its folder, without __file__
    HERE = Path.cwd()
OUT = Path(os.environ.get("HOLOPROT_EXAMPLES_OUT", HERE.parent / "out" / "examples"))
OUT.mkdir(parents=True, exist_ok=True)

files = [
    *sorted((HERE / "structures").glob("*.*")),
    *sorted((HERE.parent / "tests" / "data" / "structures").glob("*.*")),
]
files = [f for f in files if f.suffix != ".md" and "unitcell" not in f.name]

table = holoprot.embed_table(files, frames=True)  # pyarrow.Table, one row per residue
pq.write_table(table, OUT / "02_search_and_superpose.parquet")
index = holoprot.Index.build([OUT / "02_search_and_superpose.parquet"])
print(index)

# %%
# Search
# ------
# Any rows of an embedding table are queries. ``index.search(query, k)`` gives the hits table
# directly; here the lower-level ``search_vectors`` is used, because its row numbers also pick
# each hit's frame (``index.frames``) for the superposition below, and because it is asked for
# every residue at once, for the histogram. The query is in the index too: it finds itself
# first, at distance 0, and that row is dropped.

is_query = pc.and_(
    pc.and_(pc.equal(table["structure_id"], "4zhl"), pc.equal(table["chain"], "U")),
    pc.equal(table["residue_number"], 102),
)
query = table.filter(is_query)  # one row
query_row = int(np.flatnonzero(is_query.to_numpy(zero_copy_only=False))[0])  # its index row
query_latent = np.stack(query["latent"].to_numpy(zero_copy_only=False))  # (1, 128)
distance, row = index.search_vectors(query_latent, k=len(index))  # (1, n) each, ascending
others = row[0] != query_row
distance, row = distance[:, others], row[:, others]  # (1, n - 1)
k = 7
hits = index.hits_table(query, distance[:, :k], row[:, :k]).to_pandas()
columns = ["rank", "distance", "structure_id", "chain", "residue_number", "residue_name"]
print(hits[columns].to_string(index=False))

# %%
# How far is near?
# ----------------
# The distance from the query to every residue in the index. Trypsin's Asp102 stands alone
# near 0; the bulk of the residues, any type, any protein, lies above 0.2.

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
ax.hist(distance[0], bins=80, color="0.6")
nearest = hits.iloc[0]
ax.axvline(nearest.distance, color="tab:red", linewidth=1)
ax.annotate(
    f" {nearest.structure_id} {nearest.chain}:{nearest.residue_name}{nearest.residue_number}",
    (nearest.distance, 0.9),
    xycoords=("data", "axes fraction"),
    color="tab:red",
)
ax.set(xlabel="cosine distance to 4zhl U:ASP102", ylabel="residues")
fig.savefig(OUT / "02_search_and_superpose_1.png", dpi=80)

# %%
# Superpose the hits with the learned frames
# ------------------------------------------
# Each residue's frame F turns with its structure, so R = F_queryᵀ F_hit rotates a hit's
# environment (every atom within 10 Å of its Cα) onto the query's. The backbone RMSD of residues
# i−2 … i+2 after this rotation (``rmsd_frame``) is compared with the best possible fit of the
# same atoms (``rmsd_optimal``, Kabsch).

rows = index.rows.to_pandas()  # identity of every indexed residue, row i = index row i


def site(r: int) -> Site:
    """Index row `r` as a residue of its structure file, with its frame."""
    return Site(
        rows.source_path[r],
        rows.chain[r],
        int(rows.residue_number[r]),
        rows.insertion_code[r],
        frame=index.frames[r],
    )


query_site = site(query_row)
query_env, placed = superpose(query_site, [site(int(r)) for r in row[0, :k]])
assert all(isinstance(p, Superposition) for p in placed)  # (a `Skipped` if a file is missing)
ranked = list(enumerate(placed, start=1))  # (rank, Superposition)
hits["rmsd_frame"] = [p.rmsd_frame for p in placed]
hits["rmsd_optimal"] = [p.rmsd_optimal for p in placed]
print(hits[["rank", "structure_id", "chain", "residue_number", "rmsd_frame", "rmsd_optimal"]])

# %%
# For a viewer: mmCIF, PyMOL, ChimeraX and an HTML page
# -----------------------------------------------------
# Model 1 of the mmCIF file is the query's environment, model K + 1 the hit of rank K (B-factor
# = rank). Open them with ``pymol 02_search_and_superpose.pml`` or ``chimerax
# 02_search_and_superpose.cxc``; the HTML page (3Dmol.js inside) opens offline in a browser.
# ``holoprot search 4zhl.cif:U:102 --index … --superpose DIR --html report.html`` writes the same
# from the command line.

write_mmcif(OUT / "02_search_and_superpose.cif", query_env, ranked, name="4zhl_U_102")
for kind in ("pml", "cxc"):
    write_scripts(
        OUT / f"02_search_and_superpose.{kind}", "02_search_and_superpose.cif", ranked, kind
    )


def entry(label: str, env: Environment, where: Site, rank: int = 0, **cells) -> ReportEntry:
    """One environment of the report's 3D view (rank 0: the query), centred on `where`."""
    text, fmt = environment_text(env)
    return ReportEntry(label, text, (where.chain, where.residue_number), rank, fmt=fmt, **cells)


entries = [entry("4zhl:U:102 ASP", query_env, query_site)]
for rank, p in ranked:
    hit = hits.iloc[rank - 1]
    entries.append(
        entry(
            f"{hit.structure_id}:{hit.chain}:{hit.residue_number} {hit.residue_name}",
            p.environment,
            p.site,
            rank,
            distance=float(hit.distance),
            columns={"rmsd_frame": p.rmsd_frame, "rmsd_optimal": p.rmsd_optimal},
        )
    )
write_report(OUT / "02_search_and_superpose.html", [ReportQuery("4zhl:U:102 ASP", entries)])

# %%
# The superposition in 2D
# -----------------------
# The backbone (Cα trace) of each environment, drawn in the query's frame (the x̂, ŷ plane of
# its Cα, at the cross): the query in grey, a superposed hit in blue. Trypsin's Asp102 falls
# onto the query along the chain through the centre and most segments around it: the two
# proteins share their fold. The next hit, Ser190 of the query's own protein, matches only the
# chain through the centre.


def ca_trace(env: Environment) -> list[np.ndarray]:
    """Cα atoms of an environment as polylines in the query's frame (Å), one per run of
    consecutive residues of a chain (Cα–Cα ≤ 4.2 Å)."""
    ca = env.atom_name == "CA"
    xyz = (env.coords[ca] - query_env.centre) @ np.asarray(query_site.frame, np.float64).T
    chain = env.chain[ca]
    breaks = np.flatnonzero(
        (np.linalg.norm(np.diff(xyz, axis=0), axis=1) > 4.2) | (chain[1:] != chain[:-1])
    )
    return np.split(xyz, breaks + 1)


fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), layout="constrained")
for ax, (rank, p) in zip(axes, ranked[:2], strict=True):
    for line in ca_trace(query_env):
        ax.plot(line[:, 0], line[:, 1], "o-", color="0.6", markersize=3, linewidth=2)
    for line in ca_trace(p.environment):
        ax.plot(line[:, 0], line[:, 1], "o-", color="tab:blue", markersize=2, linewidth=1)
    ax.plot([0], [0], "+", color="k", markersize=20)
    hit = hits.iloc[rank - 1]
    ax.set_title(
        f"grey: 4zhl U:ASP102; blue: rank {rank}, {hit.structure_id} {hit.chain}:"
        f"{hit.residue_name}{hit.residue_number}\nbackbone RMSD {p.rmsd_frame:.2f} Å (frames),"
        f" {p.rmsd_optimal:.2f} Å (optimal)"
    )
    ax.set(aspect="equal", xlabel="x̂ (Å)", ylabel="ŷ (Å)")
fig.savefig(OUT / "02_search_and_superpose_2.png", dpi=80)

plt.show()
