"""Files → structures → neighbourhoods → Zernike coefficients, streamed in input order.

A file's residues go through in chunks of `ProjectionSettings.chunk_residues`: the atoms' grid
is built once per file, then each chunk's neighbourhoods are found, projected and handed on
before the next is made, so memory holds the file's atoms plus one chunk, however many residues
the file has (README "Memory"). `project_chunks` does one file in the calling process and
`iter_projected_chunks` many, in worker processes when asked; `project_file` and `iter_projected`
give whole files (one table per file) to callers that want them so.

Worker processes (each with one thread) parse and project whole files, with a bounded number of
files in flight so memory does not grow with the number of inputs. A file of one chunk comes back
pickled; a larger one is written by the worker, chunk by chunk, to an Arrow IPC file in a
temporary folder, and read back here a chunk at a time, so neither process holds more than a
chunk of its rows. Failures come back as `FailedInput` items in their place; the caller decides
whether to stop. Nothing here imports torch: the projection is the numba kernel on NumPy arrays.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from holoprot._util.devices import set_numba_threads
from holoprot.errors import HoloprotError, InputError
from holoprot.io.structure import read_structure
from holoprot.io.tables import IDENTITY_SCHEMA, identity_columns, vector_array, vector_field
from holoprot.zernike.basis import ZernikeBasis
from holoprot.zernike.neighborhoods import NeighborhoodSearch, centre_atoms

#: Residues per chunk: ≈ 35 kB of working memory each (neighbourhood arrays, float64 and float32
#: coefficients), so ≈ 70 MB, where 256 to 16,384 gave the same CPU time (benchmarks/RESULTS.md
#: "One giant file").
CHUNK_RESIDUES = 2048


@dataclass(frozen=True)
class ProjectionSettings:
    """What to read and how to project it (shared by every file of a run); `chunk_residues`
    bounds the residues projected at once (the rows do not depend on it)."""

    basis: ZernikeBasis = ZernikeBasis()
    radius: float = 10.0
    model: int | None = None
    chains: tuple[str, ...] | None = None
    chunk_residues: int = CHUNK_RESIDUES

    def __post_init__(self) -> None:
        if self.chunk_residues < 1:
            raise ValueError(f"chunk_residues must be positive, got {self.chunk_residues}")


@dataclass(frozen=True)
class ProjectedFile:
    """One input's residues: identity rows and coefficients (M, dim) float32, same order."""

    source: str
    identity: pa.Table
    coefficients: np.ndarray
    n_skipped: int


@dataclass(frozen=True)
class ProjectedChunk:
    """Rows ``start … start + n`` of one input's `total`: identity rows and coefficients
    (n, dim) float32, same order."""

    source: str
    identity: pa.Table
    coefficients: np.ndarray
    start: int
    total: int
    n_skipped: int

    @property
    def last(self) -> bool:
        """Whether these are the input's last rows."""
        return self.start + len(self.coefficients) == self.total


@dataclass(frozen=True)
class TableChunk:
    """Output rows of one input (identity and vector columns); `last`: its last rows."""

    source: str
    table: pa.Table
    last: bool


@dataclass(frozen=True)
class FailedInput:
    """An input that could not be processed, with a one-line reason naming it."""

    source: str
    message: str


def project_chunks(
    path: str | os.PathLike, settings: ProjectionSettings
) -> Iterator[ProjectedChunk]:
    """Parse one structure file and project its residue neighbourhoods, `chunk_residues` at a
    time, in residue order (the file is read at the first `next`).

    Raises:
        InputError: the file cannot be read or has no amino-acid residue with a Cα atom.
    """
    structure = read_structure(path, model=settings.model)
    residues, centres, skipped = centre_atoms(structure, chains=settings.chains)
    if len(residues) == 0:
        if settings.chains:
            present = ", ".join(dict.fromkeys(structure.chain[structure.is_amino_acid]))
            raise InputError(
                path,
                f"no amino-acid residue with a Cα atom in chains {','.join(settings.chains)}"
                f" (chains with amino acids: {present or 'none'})",
            )
        raise InputError(path, "no amino-acid residue with a Cα atom")
    search = NeighborhoodSearch(structure.coords, structure.element, settings.radius)
    total, step = len(residues), settings.chunk_residues
    for start in range(0, total, step):
        nbh = search.around(
            residues[start : start + step], centres[start : start + step], skipped=skipped
        )
        coefficients = settings.basis.coefficients(nbh)
        identity = pa.Table.from_pydict(identity_columns(structure, nbh), schema=IDENTITY_SCHEMA)
        yield ProjectedChunk(str(path), identity, coefficients, start, total, len(skipped))


def project_file(path: str | os.PathLike, settings: ProjectionSettings) -> ProjectedFile:
    """`project_chunks` of one file, joined into one table and array.

    Raises:
        InputError: the file cannot be read or has no amino-acid residue with a Cα atom.
    """
    chunks = list(project_chunks(path, settings))
    if len(chunks) == 1:
        identity, coefficients = chunks[0].identity, chunks[0].coefficients
    else:
        identity = pa.concat_tables([c.identity for c in chunks]).combine_chunks()
        coefficients = np.concatenate([c.coefficients for c in chunks])
    return ProjectedFile(str(path), identity, coefficients, chunks[0].n_skipped)


def _out_of_memory(path: str) -> str:
    return f"{path}: out of memory while processing it"


def _project_or_fail(path: str, settings: ProjectionSettings) -> ProjectedFile | FailedInput:
    try:
        return project_file(path, settings)
    except HoloprotError as exc:
        return FailedInput(path, str(exc))
    except MemoryError:
        return FailedInput(path, _out_of_memory(path))


def _chunks_or_fail(
    path: str, settings: ProjectionSettings
) -> Iterator[ProjectedChunk | FailedInput]:
    """A file's chunks, or one FailedInput when it fails before its first chunk. Running out of
    memory after that stops the run (HoloprotError): its first rows are already handed on."""
    chunks = project_chunks(path, settings)
    try:
        chunk = next(chunks)
    except HoloprotError as exc:
        yield FailedInput(path, str(exc))
        return
    except MemoryError:
        yield FailedInput(path, _out_of_memory(path))
        return
    yield chunk
    done = len(chunk.coefficients)
    try:
        for chunk in chunks:
            yield chunk
            done += len(chunk.coefficients)
    except MemoryError:
        raise HoloprotError(
            f"{_out_of_memory(path)} (after {done:,} of {chunk.total:,} residues)"
        ) from None


@dataclass(frozen=True)
class _SpilledFile:
    """A worker's rows of one input of several chunks, in an Arrow IPC file (one batch each)."""

    source: str
    file: str
    total: int
    n_skipped: int


def _spill_schema(dim: int) -> pa.Schema:
    return pa.schema([*IDENTITY_SCHEMA, vector_field("coefficients", dim)])


def _project_spilled(
    path: str, settings: ProjectionSettings, folder: str
) -> ProjectedChunk | _SpilledFile | FailedInput:
    """Worker task: a file of one chunk as it is; a larger one spilled to a file in `folder`."""
    spill: Path | None = None
    try:
        chunks = project_chunks(path, settings)
        first = next(chunks)
        if first.last:
            return first
        fd, name = tempfile.mkstemp(dir=folder, suffix=".arrow")
        os.close(fd)
        spill = Path(name)
        schema = _spill_schema(settings.basis.dim)
        with pa.OSFile(name, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(_with_coefficients(first, schema))
            for chunk in chunks:
                writer.write_table(_with_coefficients(chunk, schema))
        return _SpilledFile(path, name, first.total, first.n_skipped)
    except HoloprotError as exc:
        failed = FailedInput(path, str(exc))
    except MemoryError:
        failed = FailedInput(path, _out_of_memory(path))
    except (OSError, pa.ArrowException) as exc:
        raise HoloprotError(f"{path}: cannot write its rows to {folder} ({exc})") from None
    if spill is not None:
        spill.unlink(missing_ok=True)
    return failed


def _with_coefficients(chunk: ProjectedChunk, schema: pa.Schema) -> pa.Table:
    return chunk.identity.append_column(
        schema.field("coefficients"), [vector_array(chunk.coefficients)]
    )


def _read_spilled(spilled: _SpilledFile) -> Iterator[ProjectedChunk]:
    """The chunks of a spilled file, one batch at a time; the file is deleted after."""
    try:
        with pa.OSFile(spilled.file, "rb") as source:
            reader = pa.ipc.open_file(source)
            start = 0
            for i in range(reader.num_record_batches):
                table = pa.Table.from_batches([reader.get_batch(i)])
                n = table.num_rows
                flat = table.column("coefficients").chunk(0).flatten().to_numpy()
                identity = table.select(IDENTITY_SCHEMA.names)
                yield ProjectedChunk(
                    spilled.source,
                    identity,
                    flat.reshape(n, -1),
                    start,
                    spilled.total,
                    spilled.n_skipped,
                )
                start += n
    finally:
        Path(spilled.file).unlink(missing_ok=True)


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


def _in_order(paths: list[str], task: Callable[..., Any], args: tuple, workers: int) -> Iterator:
    """`task(path, *args)` for each path in `workers` spawned processes, results in input order,
    at most 2 × `workers` files in flight."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        pending: deque[Future] = deque()
        queue = iter(paths)
        for p in queue:
            pending.append(pool.submit(task, p, *args))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(task, nxt, *args))
            yield result


def iter_projected(
    paths: Sequence[str | os.PathLike],
    settings: ProjectionSettings,
    *,
    workers: int | None = None,
) -> Iterator[ProjectedFile | FailedInput]:
    """Project each file, yielding whole files in input order (a file's rows held at once; see
    `iter_projected_chunks` for bounded memory).

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
    yield from _in_order(paths, _project_or_fail, (settings,), workers)


def iter_projected_chunks(
    paths: Sequence[str | os.PathLike],
    settings: ProjectionSettings,
    *,
    workers: int | None = None,
) -> Iterator[ProjectedChunk | FailedInput]:
    """Project each file, yielding its chunks (`ProjectedChunk.last` marks a file's end) or a
    FailedInput, in input order.

    Args:
        paths: structure files.
        settings: shared parsing and projection settings.
        workers: worker processes (0 = in this process); default `default_workers(len(paths))`.

    Raises:
        HoloprotError: running out of memory after a file's first chunk was yielded.
    """
    paths = [str(p) for p in paths]
    workers = default_workers(len(paths)) if workers is None else workers
    if workers == 0:
        set_numba_threads(available_cpus())
        for p in paths:
            yield from _chunks_or_fail(p, settings)
        return
    with tempfile.TemporaryDirectory(prefix="holoprot-chunks-") as folder:
        for result in _in_order(paths, _project_spilled, (settings, folder), workers):
            if isinstance(result, _SpilledFile):
                yield from _read_spilled(result)
            else:
                yield result
