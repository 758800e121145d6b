"""Choosing the torch device (`auto` means a CUDA GPU when one is present, else the CPU) and the
threads of the numba CPU kernels."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from holoprot.errors import HoloprotError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; otherwise the named device (checked)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HoloprotError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise HoloprotError(f"--device {device}: not a torch device") from exc


def passive_thread_waits() -> bool:
    """Make idle OpenMP threads (torch's and numba's) sleep instead of spinning, unless the
    environment already sets ``OMP_WAIT_POLICY``; returns whether it applied.

    Effective only before torch or numba start their thread pools (the `holoprot` command calls
    it at start-up). Beside another CPU-bound process on 2 cores, spinning threads burn the
    cores the other threads wait for: `holoprot embed` took 3.9× the CPU time and 3.6× the wall
    time with glibc's default policy (benchmarks/RESULTS.md).
    """
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules or "numba" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def set_numba_threads(n: int) -> None:
    """Use `n` threads in the numba kernels (bounded by what numba was started with), so that they
    follow ``torch.get_num_threads()``."""
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def use_numba(backend: str, numba_applies: bool) -> bool:
    """Whether a ``backend`` choice — 'numba', 'torch' or 'auto' (numba where
    `numba_applies`, e.g. on CPU tensors) — runs a numba kernel; ValueError for other names."""
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    return backend == "numba" or (backend == "auto" and numba_applies)
