"""Microenvironment search: nearest-neighbour indexes over residue latents.

`Index` (build / search / save / load) is the API; `holoprot index` and `holoprot search` are the
commands (`holoprot.cli.search`). Imports `holoprot.embedding`, `holoprot.zernike`,
`holoprot.io` and `holoprot._util`.
"""

from holoprot.search.index import Index

__all__ = ["Index"]
