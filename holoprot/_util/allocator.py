"""The C allocator's settings: keeping freed memory for the next batch."""

from __future__ import annotations


def tune_malloc() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the system (and
    faulting it back in, page by page, on the next batch); returns whether it applied.

    Sets ``M_MMAP_THRESHOLD`` to 32 MiB (blocks below it come from the heap, not a fresh
    ``mmap``), ``M_TRIM_THRESHOLD`` to 1 GiB and ``M_TOP_PAD`` to 64 MiB. The `holoprot`
    command does this at start-up (+15–30 % encoder and +5 % training throughput at batch 512
    on 2 CPU cores, benchmarks/RESULTS.md); the Python API leaves the allocator alone unless
    this is called. Process-wide; a no-op (False) where the C library has no ``mallopt``.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter is linked against
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    settings = ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)
