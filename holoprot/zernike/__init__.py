"""Atoms → coefficients: each residue's neighbourhood, its projection onto 3D Zernike functions
(basis maths, index layout, the numba CPU kernel) and the file-by-file projection pipeline.

Imports `holoprot.io` and `holoprot._util` (never torch at import time).
"""

from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import Neighborhoods, extract_neighborhoods

__all__ = ["Neighborhoods", "ZernikeBasis", "extract_neighborhoods"]
