"""
Per-residue values on the structure
===================================

Any number computed per residue from the embeddings can be painted onto the structure: write it
into the B-factor column of a PDB or mmCIF file and every viewer colours by it. Here the number
is how alike each residue's environment is to that of the catalytic Asp25 of HIV-1 protease
(1HVR chain A): the cosine similarity of their latents.

Files written to ``$HOLOPROT_EXAMPLES_OUT`` (default ``out/examples/``):
``03_values_on_structure_1.png`` (the similarity along the sequence),
``03_values_on_structure.pdb`` and ``03_values_on_structure.cif`` (the structure with the
similarity as B-factor).
"""

# %%
# Embed, and compare every residue with Asp25
# -------------------------------------------
# The cosine similarity cos θ = 1 − the search's cosine distance: 1 for the same environment,
# lower the more the environments differ.

import os
from pathlib import Path

import gemmi
import matplotlib.pyplot as plt
import numpy as np

import holoprot

try:
    HERE = Path(__file__).resolve().parent  # this script's folder, examples/
except NameError:  # sphinx-gallery runs each example from its folder, without __file__
    HERE = Path.cwd()
OUT = Path(os.environ.get("HOLOPROT_EXAMPLES_OUT", HERE.parent / "out" / "examples"))
OUT.mkdir(parents=True, exist_ok=True)
path = HERE / "structures" / "1hvr.pdb"

df = holoprot.embed(path)  # pandas.DataFrame, one row per residue
latent = np.stack(df["latent"].to_numpy())  # (198, 128)
unit = latent / np.linalg.norm(latent, axis=1, keepdims=True)
asp25 = np.flatnonzero((df["chain"] == "A") & (df["residue_number"] == 25))[0]
df["similarity"] = unit @ unit[asp25]
print(df.nlargest(6, "similarity")[["chain", "residue_number", "residue_name", "similarity"]])

# %%
# Write it into the B-factor column
# ---------------------------------
# gemmi reads the original file, every atom of a residue gets that residue's similarity, and
# the structure is written as PDB and as mmCIF. Atoms of residues without a row (the inhibitor
# XK2, waters) get B = 0. The PDB format keeps two decimals, enough for colours.
#
# Then colour by B, in PyMOL::
#
#     spectrum b, blue_white_red, polymer, minimum=0.5, maximum=1
#
# or in ChimeraX::
#
#     color bfactor protein palette blue:white:red range 0.5,1

value = {
    (chain, number, icode): s
    for chain, number, icode, s in zip(
        df["chain"], df["residue_number"], df["insertion_code"], df["similarity"], strict=True
    )
}
st = gemmi.read_structure(str(path))
for chain in st[0]:
    for residue in chain:
        key = (chain.name, residue.seqid.num, residue.seqid.icode.strip())
        for atom in residue:
            atom.b_iso = float(value.get(key, 0.0))
st.write_pdb(str(OUT / "03_values_on_structure.pdb"))
st.setup_entities()  # entity and subchain records, which mmCIF readers expect
st.make_mmcif_document().write_file(str(OUT / "03_values_on_structure.cif"))

# %%
# Along the sequence
# ------------------
# The same values per residue number, one line per chain of the dimer, with the residues that
# touch the inhibitor (a heavy atom within 4 Å of XK2) shaded. Asp25 of chain B, its copy
# across the two-fold axis, is as alike as a residue can be; the flaps (residues 45–55) that
# close over the inhibitor are not. Many buried residues of the core (valines and isoleucines
# near 30, 75 and 85) come next: what the latent describes is the packing around a residue.

structure = holoprot.read_structure(path)
ligand = structure.coords[structure.res_name[structure.residue_index] == "XK2"]  # (L, 3) Å
near = np.linalg.norm(structure.coords[:, None] - ligand[None], axis=2).min(axis=1) <= 4.0
contact = {
    (structure.chain[r], int(structure.seq_num[r]))
    for r in np.unique(structure.residue_index[near])
    if structure.is_amino_acid[r]
}

fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, sharey=True, layout="constrained")
for ax, chain in zip(axes, ("A", "B"), strict=True):
    rows = df[df["chain"] == chain]
    for number in rows["residue_number"]:
        if (chain, number) in contact:
            ax.axvspan(number - 0.5, number + 0.5, color="gold", alpha=0.5, linewidth=0)
    ax.plot(rows["residue_number"], rows["similarity"], "-", color="0.4", linewidth=1)
    points = ax.scatter(
        rows["residue_number"], rows["similarity"], c=rows["similarity"], cmap="coolwarm",
        vmin=0.5, vmax=1, s=12, zorder=3,
    )  # fmt: skip
    ax.set(ylabel=f"chain {chain}\ncos θ to A:ASP25")
axes[0].set_title("1hvr: similarity to the environment of Asp25 A (shaded: touches XK2)")
axes[1].set_xlabel("residue number")
fig.colorbar(points, ax=axes, label="B-factor written")
fig.savefig(OUT / "03_values_on_structure_1.png", dpi=80)

plt.show()
