"""Files → structures → neighbourhoods → Zernike coefficients, streamed in input order.

`project_file` does one file in the calling process. `iter_projected` does many, in worker
processes when asked (each worker parses and projects whole files with one thread), with a
bounded number of files in flight so memory does not grow with the number of inputs. Failures
come back as `FailedInput` items in their place; the caller decides whether to stop. Nothing here
imports torch: the projection is the numba kernel on NumPy arrays.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from holoprot._util.devices import set_numba_threads
from holoprot.errors import HoloprotError, InputError
from holoprot.io.structure import read_structure
from holoprot.io.tables import IDENTITY_SCHEMA, identity_columns
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import extract_neighborhoods


@dataclass(frozen=True)
class ProjectionSettings:
    """What to read and how to project it (shared by every file of a run)."""

    basis: ZernikeBasis = ZernikeBasis()
    radius: float = 10.0
    model: int | None = None
    chains: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ProjectedFile:
    """One input's residues: identity rows and coefficients (M, dim) float32, same order."""

    source: str
    identity: pa.Table
    coefficients: np.ndarray
    n_skipped: int


@dataclass(frozen=True)
class FailedInput:
    """An input that could not be processed, with a one-line reason naming it."""

    source: str
    message: str


def project_file(path: str | os.PathLike, settings: ProjectionSettings) -> ProjectedFile:
    """Parse one structure file and project every residue neighbourhood.

    Raises:
        InputError: the file cannot be read or has no amino-acid residue with a Cα atom.
    """
    structure = read_structure(path, model=settings.model)
    nbh = extract_neighborhoods(structure, settings.radius, chains=settings.chains)
    if len(nbh) == 0:
        if settings.chains:
            present = ", ".join(dict.fromkeys(structure.chain[structure.is_amino_acid]))
            raise InputError(
                path,
                f"no amino-acid residue with a Cα atom in chains {','.join(settings.chains)}"
                f" (chains with amino acids: {present or 'none'})",
            )
        raise InputError(path, "no amino-acid residue with a Cα atom")
    coefficients = settings.basis.coefficients(nbh)
    identity = pa.Table.from_pydict(identity_columns(structure, nbh), schema=IDENTITY_SCHEMA)
    return ProjectedFile(str(path), identity, coefficients, len(nbh.skipped))


def _project_or_fail(path: str, settings: ProjectionSettings) -> ProjectedFile | FailedInput:
    try:
        return project_file(path, settings)
    except HoloprotError as exc:
        return FailedInput(path, str(exc))
    except MemoryError:
        return FailedInput(path, f"{path}: out of memory while processing it")


def _worker_init() -> None:
    """One thread per worker process: numba reads its thread count when first imported, which
    happens after this (the projection imports it on first use)."""
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


def available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Fewest CPUs on which `default_workers` starts worker processes.
WORKERS_FROM_CPUS = 3


def default_workers(n_inputs: int, cpus: int | None = None) -> int:
    """Worker processes for `n_inputs` files on `cpus` CPUs (default: those available).

    None (all in this process, the projection on every CPU) for a single file or on up to
    WORKERS_FROM_CPUS − 1 CPUs, where a worker's start-up and the hand-over of its results cost
    more than the overlap of parsing and projection gains (benchmarks/RESULTS.md); else one per
    CPU but the one writing the output, at most one per file.
    """
    cpus = available_cpus() if cpus is None else cpus
    if n_inputs <= 1 or cpus < WORKERS_FROM_CPUS:
        return 0
    return max(1, min(n_inputs, cpus - 1))


def iter_projected(
    paths: Sequence[str | os.PathLike],
    settings: ProjectionSettings,
    *,
    workers: int | None = None,
) -> Iterator[ProjectedFile | FailedInput]:
    """Project each file, yielding results in input order.

    Args:
        paths: structure files.
        settings: shared parsing and projection settings.
        workers: worker processes (0 = in this process); default `default_workers(len(paths))`.
    """
    paths = [str(p) for p in paths]
    workers = default_workers(len(paths)) if workers is None else workers
    if workers == 0:
        set_numba_threads(available_cpus())
        for p in paths:
            yield _project_or_fail(p, settings)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        pending: deque[Future] = deque()
        queue = iter(paths)
        for p in queue:
            pending.append(pool.submit(_project_or_fail, p, settings))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(_project_or_fail, nxt, settings))
            yield result
