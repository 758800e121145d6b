"""How much of the held-out reconstruction loss comes from other chains.

    python weights/chain_context.py --weights default --split runs/round5/split.csv \\
        --groups weights/training-groups.csv --files 80

The paper trains and tests on single chains (ProteinNet CASP12 chains); holoprot's files may hold
several chains (antibody heavy + light chains, complexes, a ligand's chain). For test-split files
drawn with the seed, every residue's neighbourhood is projected twice: with every atom of the file
(what training and evaluate.py use) and with the atoms of the residue's own chain only (the
paper's protocol). Prints the weighted cosine loss (1 − the √(2l+1)-weighted cosine,
evaluation.reconstruction.cosines) of both, for every residue and for the residues with an atom of
another chain within the radius ("contact"; for the others both neighbourhoods are the same
atoms), overall and per set of the groups file.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict

import numpy as np
import torch

from holoprot.embedding.embedder import load_model
from holoprot.evaluation import read_group_sets, reconstruction_rows
from holoprot.io.structure import Structure, read_structure
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import centre_atoms, neighborhoods_around


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", default="default")
    p.add_argument("--split", required=True, help="a training run's split.csv")
    p.add_argument("--groups", help="groups file with a set column")
    p.add_argument("--files", type=int, default=80, help="test files drawn (default 80)")
    p.add_argument("--radius", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def own_chain_coefficients(
    structure: Structure, basis: ZernikeBasis, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every residue projected twice: ``(all atoms (M, dim), own chain only (M, dim), contact
    (M,) bool)``, rows in :func:`~holoprot.zernike.neighborhoods.centre_atoms` order (that of
    :func:`~holoprot.zernike.neighborhoods.extract_neighborhoods`)."""
    atom_chain = structure.chain.astype(str)[structure.residue_index]
    res_idx, ca_idx, _ = centre_atoms(structure)
    together = neighborhoods_around(structure.coords, structure.element, res_idx, ca_idx, radius)
    centre_chain = atom_chain[ca_idx]
    per_atom = np.repeat(np.arange(len(together)), together.n_atoms)
    other = atom_chain[together.atom_index] != centre_chain[per_atom]
    contact = np.bincount(per_atom[other], minlength=len(together)) > 0
    alone = np.empty((len(res_idx), basis.dim), np.float32)
    for chain in np.unique(centre_chain):
        own = np.flatnonzero(atom_chain == chain)
        pick = centre_chain == chain
        nbh = neighborhoods_around(
            structure.coords[own],
            structure.element[own],
            res_idx[pick],
            np.searchsorted(own, ca_idx[pick]),
            radius,
        )
        alone[pick] = basis.coefficients(nbh)
    return basis.coefficients(together), alone, contact


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model, info = load_model(args.weights, device="cpu")
    basis = ZernikeBasis()
    ls = basis.layout()["l"]
    with open(args.split, newline="") as fh:
        test = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    sets = read_group_sets(args.groups) if args.groups else None
    rng = np.random.default_rng(args.seed)
    chosen = [test[i] for i in sorted(rng.choice(len(test), min(args.files, len(test)), False))]
    losses: dict[str, list[np.ndarray]] = defaultdict(list)
    for row in chosen:
        structure = read_structure(row["source_path"])
        together, alone, contact = own_chain_coefficients(structure, basis, args.radius)
        name = sets.get(row["structure_id"], "?") if sets else "all"
        for key, x in (("together", together), ("alone", alone)):
            weighted = reconstruction_rows(model, x, ls)["weighted"]
            losses[f"{name}:{key}"].append(1.0 - weighted)
        losses[f"{name}:contact"].append(contact)
    print(f"weights {info['name']} sha256 {info['sha256'][:12]}…, {len(chosen)} test files")
    print(
        "| set | residues | contact | loss, all atoms | loss, own chain | contact residues:"
        " all atoms / own chain |"
    )
    print("|---|---|---|---|---|---|")
    names = sorted({k.split(":")[0] for k in losses})
    for name in [*names, "all"] if len(names) > 1 else names:
        keys = names if name == "all" else [name]
        together, alone, contact = (
            np.concatenate([a for k in keys for a in losses[f"{k}:{part}"]])
            for part in ("together", "alone", "contact")
        )
        print(
            f"| {name} | {len(contact)} | {contact.mean():.3f} | {together.mean():.4f} |"
            f" {alone.mean():.4f} | {together[contact].mean():.4f} /"
            f" {alone[contact].mean():.4f} |"
        )


if __name__ == "__main__":
    main()
