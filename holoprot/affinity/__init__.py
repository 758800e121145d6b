"""Protein–ligand binding affinity from H-(V)AE pocket embeddings (or RF-Score counts) with
random-forest ensembles; the `train-affinity` / `predict-affinity` commands live in `commands`.

Nothing here imports torch at import time: the `hae` features load the embedder lazily.
"""
