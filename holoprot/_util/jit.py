"""Compiling the numba CPU kernels, cached on disk where a cache can be written.

numba keeps compiled kernels in the first writable of: ``NUMBA_CACHE_DIR``, ``__pycache__`` beside
the package's sources, the user's cache folder (``~/.cache/numba``). Where none is writable (a
read-only install without a home folder) `cached_njit` compiles without a cache, once per
process (a few seconds per kernel), and says so once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

_warned = False


def cached_njit(**options: Any) -> Callable[[Callable], Callable]:
    """``numba.njit(cache=True, **options)``, or without the cache (and one warning) where numba
    finds nowhere to write it."""

    def decorate(fn: Callable) -> Callable:
        from numba import njit

        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
            global _warned
            if not _warned:
                _warned = True
                warnings.warn(
                    f"numba cannot cache its compiled kernels ({exc}); they are compiled at each"
                    " start. Set NUMBA_CACHE_DIR to a writable folder to keep them.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return njit(cache=False, **options)(fn)

    return decorate
