"""Coefficients → embeddings: the encoder over streams of files (`Embedder`, `embed`,
`embed_table`) and the same on a Ray cluster (`embed_dataset`, imported on use: Ray is optional).

Imports `holoprot.model`, `holoprot.zernike`, `holoprot.io` and `holoprot._util`.
"""

from holoprot.embedding.embedder import Embedder, Embedding, embed, embed_table, load_model

__all__ = ["Embedder", "Embedding", "embed", "embed_table", "load_model"]
