"""
Scaling out: the same embedding on a Ray cluster
================================================

``holoprot embed --engine ray`` runs the embedding on `Ray Data
<https://docs.ray.io/en/latest/data/data.html>`_: files are parsed and projected in CPU tasks,
the encoder runs in a pool of actors (on GPUs where the cluster has them), and the rows land in
a Parquet *dataset*, a folder of ``part-*.parquet`` files that pyarrow, pandas, polars, DuckDB
and Spark read as one table. Here a local Ray cluster on this machine embeds the gallery's three
structures, and the rows are checked against the single-machine engine's.

Files written to ``$HOLOPROT_EXAMPLES_OUT`` (default ``out/examples/``):
``06_scaling_out_1.png`` (a column of the dataset, per structure) and the dataset itself,
``06_scaling_out_dataset/``.
"""

# %%
# Embed on a local Ray cluster
# ----------------------------
# The command, as in a shell (``pip install "holoprot[ray]"`` adds Ray)::
#
#     holoprot embed FILES -o dataset --engine ray --workers 1
#
# Without ``--address`` it starts a Ray cluster on this machine's CPUs and stops it at the end;
# ``--address auto`` (or ``ray://host:10001``) joins a running cluster instead. ``--workers 1``
# fixes the encoder pool at one actor (by default it autoscales). From Python the same is
# ``holoprot.embed_dataset(files, "dataset")``. Most of the time here is Ray starting up: the
# engine is for inputs by the thousand, on many machines and GPUs; on one machine the local
# engine already uses every CPU.

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.dataset as ds

import holoprot

try:
    HERE = Path(__file__).resolve().parent  # this script's folder, examples/
except NameError:  # sphinx-gallery runs each example from its folder, without __file__
    HERE = Path.cwd()
OUT = Path(os.environ.get("HOLOPROT_EXAMPLES_OUT", HERE.parent / "out" / "examples"))
OUT.mkdir(parents=True, exist_ok=True)

files = [str(f) for f in sorted((HERE / "structures").glob("*.*")) if f.suffix != ".md"]
dataset = OUT / "06_scaling_out_dataset"

# --overwrite replaces the dataset of an earlier run of this example (--resume would add to it).
start = time.perf_counter()
command = ["embed", *files, "-o", str(dataset), "--engine", "ray", "--workers", "1", "--overwrite"]
run = subprocess.run([sys.executable, "-m", "holoprot", *command], capture_output=True, text=True)
if run.returncode != 0:
    raise RuntimeError(f"holoprot embed --engine ray failed:\n{run.stderr}")
print(run.stdout + run.stderr + f"({time.perf_counter() - start:.0f} s, Ray's start included)")

# %%
# Read the dataset back
# ---------------------
# A dataset folder is read as one table: with ``pyarrow.dataset`` (lazily: column selections
# and filters are applied as the files are read, which matters for big datasets) or pandas.
# Every part file carries the schema and the file metadata of the single-file output (holoprot
# version, weights, basis).

parts = sorted(p.name for p in dataset.glob("part-*.parquet"))
print(f"{len(parts)} part file(s):", parts)
table = ds.dataset(dataset, format="parquet").to_table()
print(table.schema.to_string(show_schema_metadata=False))
print("weights:", json.loads(table.schema.metadata[b"weights_name"]))

only_1hvr = ds.dataset(dataset).to_table(
    columns=["chain", "residue_number", "residue_name"],
    filter=ds.field("structure_id") == "1hvr",
)
print(f"1hvr: {only_1hvr.num_rows} residues, {only_1hvr.num_columns} columns")

frame = pd.read_parquet(dataset)
print(frame.groupby("structure_id").size().rename("residues"))

# %%
# The same rows as the single-machine engine
# ------------------------------------------
# ``holoprot.embed`` runs the local engine of ``holoprot embed`` in this process. Part
# files hold whole inputs, in the order the cluster finished them, so both tables are sorted by
# their identity columns first. The identities must be equal, the latents equal up to float32
# rounding: the encoder may see other batch compositions on the cluster, which changes the
# order of some float32 sums (the test suite allows 1e-5 of the largest latent).

key = ["source_path", "chain", "residue_number", "insertion_code"]
single = holoprot.embed(files).sort_values(key, ignore_index=True)
frame = frame.sort_values(key, ignore_index=True)
identity = [*key, "structure_id", "residue_name", "atom_count"]
assert frame[identity].equals(single[identity])
a, b = np.stack(frame["latent"].to_numpy()), np.stack(single["latent"].to_numpy())
largest = np.abs(a - b).max() / np.abs(b).max()
print(f"{len(frame)} rows, identities equal; largest latent difference {largest:.1e} × max")
assert largest <= 1e-5

# %%
# A column of the dataset
# -----------------------
# Like any table: the atoms that enter each residue's projection (heavy atoms within 10 Å of
# its Cα, every chain and ligand included), per structure. Residues on the surface have half
# the neighbours of buried ones.

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
for structure_id, rows in frame.groupby("structure_id"):
    ax.hist(rows["atom_count"], bins=40, histtype="step", linewidth=1.5, label=structure_id)
ax.set(xlabel="atoms within 10 Å of the Cα", ylabel="residues")
ax.legend()
fig.savefig(OUT / "06_scaling_out_1.png", dpi=80)

plt.show()
