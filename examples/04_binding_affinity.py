"""
Binding affinity from pocket embeddings
=======================================

``holoprot train-affinity`` turns each protein–ligand complex into one vector (the sum of the
latents of the pocket residues, embedded with the ligand's atoms in their neighbourhoods) and
fits random forests to −log10 Kd/Ki; ``holoprot predict-affinity`` applies a saved model to new
complexes. Both are commands; this page runs them as a user would and reads what they write.

.. note::
   Without data, this page runs on the four complexes bundled with the tests (cut from public
   PDB entries, with their PDBbind labels): **a demonstration of the interface, not of
   accuracy** (four complexes cannot train a model). Point ``HOLOPROT_PDBBIND`` at a folder in
   PDBbind's layout to run it on real data: on the project's collection of 413 complexes (410
   labelled, the 285 of the CASF-2016 core as the test set) this page's commands give a test
   Pearson correlation of 0.41 with the pocket latents, and element-pair counts
   (``--features counts``) about 0.62 (``benchmarks/RESULTS.md`` has the full table).

Files written to ``$HOLOPROT_EXAMPLES_OUT`` (default ``out/examples/``):
``04_binding_affinity_1.png`` (predicted against measured affinity) and the trained models in
``04_binding_affinity/model/``.
"""

# %%
# The data: a PDBbind-layout folder
# ---------------------------------
# Each complex is a folder ``<id>/`` holding ``<id>_protein.pdb`` (or ``<id>_pocket.pdb``) and
# ``<id>_ligand.sdf`` (or ``.mol2``); the labels come from PDBbind index files
# (``INDEX_general_PL_data.2020``, ``CoreSet.dat``, …) found in the folder or its ``index/``.

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

try:
    HERE = Path(__file__).resolve().parent  # this script's folder, examples/
except NameError:  # sphinx-gallery runs each example from its folder, without __file__
    HERE = Path.cwd()
OUT = Path(os.environ.get("HOLOPROT_EXAMPLES_OUT", HERE.parent / "out" / "examples"))
OUT.mkdir(parents=True, exist_ok=True)
FIXTURE = HERE.parent / "tests" / "data" / "affinity"

if os.environ.get("HOLOPROT_PDBBIND"):
    data = Path(os.environ["HOLOPROT_PDBBIND"])
    options = []  # the defaults: CASF-2016 core as test when CoreSet.dat is there, full grid
else:
    data = FIXTURE
    # 4 complexes: leave one out (every complex predicted by a model that did not see it),
    # and a quick grid
    options = ["--split", "kfold", "--k-folds", "4", "--grid", "small", "--n-forests", "2"]
print(data, sorted(p.name for p in data.iterdir())[:8])


def run_holoprot(*args: str) -> str:
    """Run a `holoprot` command with this Python; return what it printed (stdout + stderr)."""
    run = subprocess.run(
        [sys.executable, "-m", "holoprot", *map(str, args)], capture_output=True, text=True
    )
    if run.returncode != 0:
        raise RuntimeError(f"holoprot {args[0]} failed:\n{run.stderr}")
    return run.stdout + run.stderr


# %%
# Train
# -----
# The same as ``holoprot train-affinity DATA --out MODEL [options]`` in a shell. The default
# features are the pocket latents (``--features hae``; ``counts``, ``zernike-l0`` and
# combinations such as ``hae+counts`` are the others) and the regressor a random-forest
# ensemble (``--regressor rf``, or ``ridge``). Embeddings are cached (``--cache-dir``), so a
# second run with other features or splits does not embed again.

work = OUT / "04_binding_affinity"
model = work / "model"
print(
    run_holoprot(
        "train-affinity",
        data,
        "--out",
        model,
        "--cache-dir",
        work / "cache",
        "--overwrite",
        *options,
    )  # fmt: skip
)

# %%
# What it wrote
# -------------
# One folder per feature set and regressor (here ``hae/``): the forest (``forest.skops``,
# ``forest.json``), ``predictions.csv`` (every complex, its part of the split, label and
# prediction), ``metrics.json`` and a scatter plot of its own. On the four bundled complexes
# each fold's forest learns from two or three complexes and predicts about the mean of their
# labels: no agreement with the measured values is to be expected.

predictions = pd.read_csv(model / "hae" / "predictions.csv")
print(predictions.head(8).to_string(index=False))
metrics = json.loads((model / "hae" / "metrics.json").read_text())
print("split:", metrics["split"])

fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
for part, rows in predictions.groupby("split"):
    ax.scatter(rows["label"], rows["prediction"], s=14, label=f"{part} ({len(rows)})")
low = min(predictions["label"].min(), predictions["prediction"].min()) - 0.5
high = max(predictions["label"].max(), predictions["prediction"].max()) + 0.5
ax.plot([low, high], [low, high], color="0.6", linewidth=0.8)
if len(predictions) <= 10:  # name the points of a small set
    for _, c in predictions.iterrows():
        ax.annotate(f" {c['id']}", (c["label"], c["prediction"]), fontsize=8)
ax.set(xlabel="measured −log10 K (M)", ylabel="predicted", xlim=(low, high), ylim=(low, high))
ax.set_title(f"{data.name}: {metrics['split']}", fontsize=9)
ax.legend()
fig.savefig(OUT / "04_binding_affinity_1.png", dpi=80)

# %%
# Predict
# -------
# A saved model takes complex folders, manifest CSVs or ``PROTEIN:LIGAND`` file pairs, and
# checks that it can rebuild its feature columns with the same weights first. The CSV goes to
# standard output (or ``-o FILE``). (1HVR was among the training complexes: this shows the call,
# not a test.)

pair = f"{FIXTURE / '1hvr' / '1hvr_protein.pdb'}:{FIXTURE / '1hvr' / '1hvr_ligand.sdf'}"
print(run_holoprot("predict-affinity", model / "hae", pair, "--cache-dir", work / "cache"))

plt.show()
