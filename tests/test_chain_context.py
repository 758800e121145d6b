"""weights/chain_context.py: each residue projected with every atom and with its own chain's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from holoprot.affinity.preparation import subset_atoms
from holoprot.io.structure import Structure, read_structure
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import extract_neighborhoods

ROOT = Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("chain_context", ROOT / "weights/chain_context.py")
chain_context = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chain_context)

BASIS = ZernikeBasis()
DIMER = read_structure(ROOT / "examples/structures/1hvr.pdb")  # HIV protease dimer, chains A and B


def one_chain(structure: Structure, chain: str) -> Structure:
    """`structure` without the atoms and residues of every other chain."""
    return subset_atoms(structure, structure.chain[structure.residue_index] == chain)


def test_two_chains_differ_only_where_the_other_chain_is_near() -> None:
    together, alone, contact = chain_context.own_chain_coefficients(DIMER, BASIS, 10.0)
    np.testing.assert_array_equal(together, BASIS.coefficients(extract_neighborhoods(DIMER, 10.0)))
    assert together.shape == alone.shape == (len(contact), BASIS.dim)
    assert 0.1 < contact.mean() < 0.9  # the dimer interface, not every residue
    np.testing.assert_array_equal(together[~contact], alone[~contact])
    assert (np.abs(together - alone).max(axis=1)[contact] > 1e-3).all()
    # Own chain only = the same structure with the other chain removed (float32 sums of the same
    # atoms in another order: 1e-6 absolute on coefficients of order 0.1).
    for chain in ("A", "B"):
        expected = BASIS.coefficients(extract_neighborhoods(one_chain(DIMER, chain), 10.0))
        rows = DIMER.chain[extract_neighborhoods(DIMER, 10.0).residue_index] == chain
        np.testing.assert_allclose(alone[rows], expected, rtol=0, atol=1e-6)


def test_a_single_chain_is_its_own_context() -> None:
    together, alone, contact = chain_context.own_chain_coefficients(
        one_chain(DIMER, "A"), BASIS, 10.0
    )
    assert len(contact) > 90 and not contact.any()
    np.testing.assert_array_equal(together, alone)
