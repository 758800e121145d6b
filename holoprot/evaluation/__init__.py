"""How good are weights: reconstruction metrics, rotation invariance, linear probes and their
labels (DSSP secondary structure, residue type), as `weights/evaluate.py` runs them.

Imports `holoprot.embedding`, `holoprot.model`, `holoprot.training`, `holoprot.zernike` and
`holoprot.io`; nothing imports it but the command line and the weights scripts.
"""
