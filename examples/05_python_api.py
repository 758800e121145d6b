"""
The pipeline step by step in Python
===================================

``holoprot embed`` (or ``holoprot.embed``) runs four steps for every file: read the atoms, cut a
10 Å neighbourhood around each Cα, project each neighbourhood onto 3D Zernike functions, and
encode the coefficients with the H-AE. This page runs them one at a time on the HIV protease
1HVR, printing the shape of what each step hands to the next, then decodes a residue's latent
back into coefficients and checks that the latent does not change when the atoms are rotated.

Figures written to ``$HOLOPROT_EXAMPLES_OUT`` (default ``out/examples/``):
``05_python_api_1.png`` (input against reconstruction, per degree l).
"""

# %%
# Read the structure
# ------------------
# :func:`holoprot.read_structure` returns flat NumPy arrays: one row per atom (waters and
# hydrogens dropped; ligands and ions kept) and one row per residue.

import dataclasses
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.spatial.transform import Rotation

import holoprot

try:
    HERE = Path(__file__).resolve().parent  # this script's folder, examples/
except NameError:  # sphinx-gallery runs each example from its folder, without __file__
    HERE = Path.cwd()
OUT = Path(os.environ.get("HOLOPROT_EXAMPLES_OUT", HERE.parent / "out" / "examples"))
OUT.mkdir(parents=True, exist_ok=True)

structure = holoprot.read_structure(HERE / "structures" / "1hvr.pdb")
print(f"{structure.id}: {structure.n_atoms} atoms, {structure.n_residues} residues")
print("coords", structure.coords.shape, structure.coords.dtype, "(Å)")
print("element", structure.element[:6], "residue names", structure.res_name[:4])
print("HETATM groups:", sorted(set(structure.res_name[structure.is_hetero].tolist())))

# %%
# Cut the neighbourhoods
# ----------------------
# One neighbourhood per amino acid with a Cα: every atom within 10 Å of it (all chains, the
# inhibitor XK2 included), as coordinates relative to that Cα. They are ragged, so they come as
# one flat atom array and offsets: neighbourhood ``i`` is rows ``offsets[i]:offsets[i + 1]``.

nbh = holoprot.extract_neighborhoods(structure, radius=10.0)
print(f"{len(nbh)} neighbourhoods, {len(nbh.coords)} atoms in all")
print("coords", nbh.coords.shape, nbh.coords.dtype, "offsets", nbh.offsets.shape)
print(f"atoms per neighbourhood: {nbh.n_atoms.min()}–{nbh.n_atoms.max()}")

# %%
# Project onto the Zernike basis
# ------------------------------
# Each neighbourhood becomes 1708 numbers: for each element channel (C, N, O, S), radial order
# n ≤ 20 and degree l ≤ 6, the 2l + 1 coefficients of that degree. The vector is laid out as
# e3nn irreps, degree by degree; under a rotation each degree-l block turns by its Wigner matrix
# and the 44 l = 0 coefficients do not change. (On a CPU a compiled numba kernel does the work.)

basis = holoprot.ZernikeBasis()  # lmax 6, nmax 20, rcut 10 Å, channels C N O S
x = basis.project_neighborhoods(nbh)  # torch.Tensor (M, 1708) float32
print("coefficients", tuple(x.shape), x.dtype)
print("irreps", basis.irreps)

# %%
# Encode
# ------
# :func:`holoprot.load_model` returns the H-AE (a ``torch.nn.Module``, in eval mode) and its
# metadata; the shipped ``default`` weights were trained on coefficients of this basis.
# ``encode`` gives the invariant latent (the mean; ``None`` for the log-variance of an AE) and
# a learned 3×3 frame that rotates with the atoms; ``decode`` turns both back into
# coefficients, in the model's normalised units (the input divided by a constant).

model, info = holoprot.load_model("default", device="cpu")  # where the coefficients are
print(f"weights {info['name']} (sha256 {info['sha256'][:12]}…)")
assert info["metadata"]["basis"]["irreps"] == basis.irreps  # the basis the weights expect

with torch.no_grad():
    z, _, frame = model.encode(x)  # (M, 128), None, (M, 3, 3)
    recon = model.decode(z, frame)  # (M, 1708), normalised units
    target = model.normalise(x)  # the input in the same units
print("latent", tuple(z.shape), "frame", tuple(frame.shape), "reconstruction", tuple(recon.shape))

# %%
# Reconstruction of one residue
# -----------------------------
# The catalytic Asp25 of chain A, next to the inhibitor. Left: the power per degree l (the sum
# of squares of the degree-l coefficients, which rotations leave unchanged) of the input and of
# the reconstruction. Right: the cosine between input and reconstruction per degree, for this
# residue and for all 198 residues (median). The l = 0 part comes back almost exactly; higher
# degrees keep their direction better than their size: a decoder trained on the squared error
# shrinks what it cannot predict towards zero.

degree = basis.layout()["l"]  # (1708,) degree of each coefficient
ls = np.arange(basis.lmax + 1)


def per_degree(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of (M, 1708) input `a` and reconstruction `b` → per degree l, each (M, lmax + 1):
    the power of a, the power of b and their cosine."""
    pa = np.stack([np.sum(a[:, degree == l] ** 2, axis=1) for l in ls], axis=1)
    pb = np.stack([np.sum(b[:, degree == l] ** 2, axis=1) for l in ls], axis=1)
    dot = np.stack([np.sum(a[:, degree == l] * b[:, degree == l], axis=1) for l in ls], axis=1)
    return pa, pb, dot / np.sqrt(pa * pb)


power_in, power_out, cosine = per_degree(target.numpy(), recon.numpy())
centre = nbh.residue_index  # (M,) the residue-table row of each neighbourhood's centre
row = int(np.flatnonzero((structure.chain[centre] == "A") & (structure.seq_num[centre] == 25))[0])
print("cosine per degree l, Asp25:", np.round(cosine[row], 3))
print("cosine per degree l, median:", np.round(np.median(cosine, axis=0), 3))

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
left.bar(ls - 0.2, power_in[row], width=0.4, label="input")
left.bar(ls + 0.2, power_out[row], width=0.4, label="reconstruction")
left.set(xlabel="degree l", ylabel="power (sum of squares)", yscale="log")
left.set_title(f"{structure.id} A:{structure.res_name[centre[row]]}25: power per l")
left.legend()
right.plot(ls, cosine[row], "o-", label="Asp25")
right.plot(ls, np.median(cosine, axis=0), "s--", label=f"median of {len(nbh)} residues")
right.set(xlabel="degree l", ylabel="cosine (input, reconstruction)", ylim=(0, 1.02))
right.set_title("how well each degree comes back")
right.legend()
fig.savefig(OUT / "05_python_api_1.png", dpi=80)

# %%
# The latent does not turn with the atoms
# ---------------------------------------
# Rotate every atom about the origin by a random rotation R, then redo the whole pipeline. The
# latent should not change and the frame should turn with the atoms (F → F Rᵀ), both up to
# float32 rounding: the projection sums hundreds of atoms and the encoder runs many float32
# layers, so differences of a few 1e-6 relative to the latent's size are rounding, not a broken
# symmetry (a model that were not invariant would differ by tens of percent).

rotation = Rotation.random(random_state=0).as_matrix()  # (3, 3)
turned = dataclasses.replace(structure, coords=structure.coords @ rotation.T)
x_turned = basis.project_neighborhoods(holoprot.extract_neighborhoods(turned, radius=10.0))
with torch.no_grad():
    z_turned, _, frame_turned = model.encode(x_turned)
latent_change = (z_turned - z).abs().max() / z.abs().max()
frame_change = (frame_turned - frame @ torch.as_tensor(rotation.T, dtype=frame.dtype)).abs().max()
print(f"largest latent change, relative to the largest |latent|: {latent_change:.1e}")
print(f"largest frame difference from F Rᵀ: {frame_change:.1e}")

plt.show()
