"""Protein–ligand binding affinity from H-(V)AE pocket embeddings, their l = 0 Zernike
coefficients or RF-Score counts (alone or concatenated), with random-forest ensembles or ridge
regression; the CASF-core and sequence-identity (`clusters`) splits in `splits` and `clusters`,
and what a file's preparation may not change in `preparation` (commands: `holoprot.cli.affinity`).

Imports `holoprot.embedding`, `holoprot.zernike`, `holoprot.io` and `holoprot._util`; nothing
here imports torch at import time: the `hae` and `zernike-l0` features load it lazily.
"""
