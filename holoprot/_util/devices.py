"""Choosing the torch device (`auto` means a CUDA GPU when one is present, else the CPU), the
threads of the numba CPU kernels, and whether a device has bfloat16 matmuls in hardware."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from holoprot.errors import HoloprotError

if TYPE_CHECKING:
    import torch


def cuda_may_be_present(sys_platform: str = sys.platform, dev: Path = Path("/dev")) -> bool:
    """Whether torch could find a CUDA GPU here, judged without importing torch: on Linux only
    where an NVIDIA device node (``/dev/nvidiactl``, ``/dev/nvidia0``, …; containers get them
    with their GPUs) or WSL's GPU bridge (``/dev/dxg``) exists; never on macOS (torch has no CUDA
    there); always elsewhere (then torch is asked)."""
    if sys_platform == "darwin":
        return False
    if not sys_platform.startswith("linux"):
        return True
    return (dev / "dxg").exists() or any(dev.glob("nvidia*"))


def resolve_device_name(device: str) -> str:
    """:func:`resolve_device` as a name (``"cpu"``, ``"cuda"``, …), importing torch only where
    it must be asked: not for ``"cpu"``, nor for ``"auto"`` where no CUDA driver is present
    (:func:`cuda_may_be_present`)."""
    if device == "cpu" or (device == "auto" and not cuda_may_be_present()):
        return "cpu"
    return str(resolve_device(device))


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


#: How long OpenBLAS's idle threads spin (NumPy's BLAS, which the CPU encoder multiplies with):
#: 2^4 cycles instead of its default 2^28 (≈ 0.1 s), which the numba kernel between two matmuls
#: spent waiting for the cores: the CPU encoder ran 2,390 residues/s with the default, 2,917
#: with this (batch 512, 2 cores; benchmarks/RESULTS.md).
OPENBLAS_THREAD_TIMEOUT = "4"


def passive_thread_waits() -> bool:
    """Make idle threads sleep instead of spinning: OpenMP's (torch's and numba's;
    ``OMP_WAIT_POLICY=PASSIVE``) and OpenBLAS's (NumPy's; :data:`OPENBLAS_THREAD_TIMEOUT`), each
    unless the environment sets it already; returns whether either applied.

    Effective only before the libraries start their thread pools: OpenMP's setting before torch
    or numba is imported, OpenBLAS's before NumPy (the `holoprot` command calls this at
    start-up, before either). Beside another CPU-bound process on 2 cores, spinning threads burn
    the cores the other threads wait for: `holoprot embed` took 3.9× the CPU time and 3.6× the
    wall time with glibc's default policy (benchmarks/RESULTS.md).
    """
    applied = False
    if not {"torch", "numba"} & sys.modules.keys() and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        applied = True
    if "numpy" not in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_THREAD_TIMEOUT
        applied = True
    return applied


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


#: CPU feature flags under which bfloat16 matmuls run in hardware: x86 AVX-512 BF16 and AMX-BF16
#: (Linux ``/proc/cpuinfo`` names), Arm's BF16 extension (``bf16`` in ``/proc/cpuinfo``'s
#: Features on Linux; FEAT_BF16 on macOS, see :func:`parse_sysctl_flags`).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def parse_cpuinfo_flags(text: str) -> frozenset[str]:
    """The feature flags of the first processor in a Linux ``/proc/cpuinfo`` text: its ``flags``
    line (x86) or ``Features`` line (Arm), lower-cased; empty if there is neither."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def parse_sysctl_flags(text: str) -> frozenset[str]:
    """Feature flags from macOS ``sysctl hw.optional.arm`` output: each ``…FEAT_<NAME>: 1`` line
    gives ``<name>`` lower-cased (``FEAT_BF16`` → ``bf16``); lines with 0 are left out."""
    flags = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        name = key.strip().rpartition(".")[2]
        if sep and value.strip() == "1" and name.upper().startswith("FEAT_"):
            flags.add(name[len("FEAT_") :].lower())
    return frozenset(flags)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU feature flags: Linux ``/proc/cpuinfo``, else macOS ``sysctl``; empty
    where neither can be read."""
    try:
        return parse_cpuinfo_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        pass
    if sys.platform != "darwin":
        return frozenset()
    try:
        result = subprocess.run(
            ["sysctl", "hw.optional.arm"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return parse_sysctl_flags(result.stdout)


def cpu_has_bf16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these feature `flags` multiplies bfloat16 in hardware."""
    return not BF16_CPU_FLAGS.isdisjoint(flags)


def bf16_supported(device: str | torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware (so that
    ``HVAE.encode(x, precision="bf16")`` can be faster than fp32 there): a CPU with one of
    :data:`BF16_CPU_FLAGS` (:func:`cpu_flags`), a CUDA GPU of compute capability 8.0 or more;
    False for other devices. Elsewhere torch computes bf16 matmuls in software, slower than fp32.
    """
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return cpu_has_bf16(cpu_flags())
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


#: Precisions of the encoder's matmuls (:meth:`holoprot.model.HVAE.encode`).
PRECISIONS = ("fp32", "bf16")


def check_precision_name(precision: str) -> None:
    """Refuse, in one line, a precision name other than those of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise HoloprotError(f"--precision {precision}: expected fp32 or bf16")


def check_precision(precision: str, device: str | torch.device) -> None:
    """Refuse, in one line, a precision name other than ``fp32`` or ``bf16``, and ``bf16`` on a
    `device` that would emulate it (:func:`bf16_supported`: slower than fp32 there, and no
    faster result to trade the 0.4 % latent error for)."""
    check_precision_name(precision)
    if precision == "bf16" and not bf16_supported(device):
        import torch

        device = torch.device(device)
        what = (
            "this CPU has no bfloat16 matrix instructions (AVX-512 BF16, AMX or Arm BF16)"
            if device.type == "cpu"
            else f"{device} has no bfloat16 matrix hardware (CUDA compute capability 8.0+)"
        )
        raise HoloprotError(f"--precision bf16: {what}; use --precision fp32")
