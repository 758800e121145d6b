"""Embedding at cluster scale on Ray Data: `holoprot embed INPUTS -o OUT_DIR --engine ray`.

One streamed Ray Data dataset:

1. the input list (local paths, or URIs of any filesystem pyarrow understands, e.g. ``s3://``)
   becomes a dataset of paths;
2. CPU tasks parse and project `files_per_task` files each, a file's residues in chunks
   (`zernike.pipeline.project_chunks`); an input that fails becomes one row carrying its
   one-line reason;
3. an actor pool runs the encoder, one model per actor, on a GPU when `gpus_per_worker` > 0;
4. a datasink writes each write task's rows to one Parquet part file
   ``OUT_DIR/part-<hash>.parquet`` (under a temporary name, then renamed) with the schema and the
   file metadata of the single-machine `holoprot embed` output, and collects the failures.

Blocks are about one chunk (`_block_bytes`), so a giant input's rows stream through in bounded
memory and may reach several write tasks. Every part file still holds whole inputs only: each row
carries its index in its input and the input's row count (internal columns, not written); a write
task puts the inputs it holds whole in its part file and the others' rows, in runs of consecutive
rows, in hidden piece files (``.piece-<hash>-<first row>.parquet``), which the driver joins into
one part per input once every task is done (pieces of an input that failed or did not arrive
whole are deleted). `resume=True` therefore skips exactly the inputs found in the part files,
and a task that Ray retries (say its worker was killed) sees the same rows and rewrites the same
part or piece names: nothing is lost or duplicated. A killed run leaves only hidden pieces
besides whole parts; the next run deletes them. Ray is an optional dependency
(``pip install holoprot[ray]``).

Joining a cluster (`address`) fails in one line, without Ray's retry loops, where the cause is
final: nothing answers at HOST:PORT (a TCP connection is tried first, 5 s at most), or the head
refuses this client's authentication token (asked once, before `ray.init`). Ray's own INFO logs
and progress bars are off unless `verbose`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from holoprot._util.devices import check_precision, check_precision_name
from holoprot.errors import HoloprotError, InputError
from holoprot.io.structure import max_structure_bytes, size_limit_message
from holoprot.io.tables import (
    IDENTITY_SCHEMA,
    numeric_array,
    repeated_string,
    vector_array,
    vector_field,
)
from holoprot.zernike.pipeline import CHUNK_RESIDUES, ProjectionSettings, project_chunks

ERROR_COLUMN = "error"
#: Internal columns between the stages: a row's index in its input, and the input's rows.
ROW_COLUMN, ROWS_COLUMN = "input_row", "input_rows"
PART_PREFIX = "part-"
PIECE_PREFIX = ".piece-"
_IDENTITY = IDENTITY_SCHEMA.names
#: Host memory reserved per encoder actor: model plus a batch of 512 on CPU (the whole
#: single-machine `holoprot embed` peaks at 0.8-0.9 GB, benchmarks/RESULTS.md). Besides sizing the
#: pool, the reservation keeps Ray Data from fusing the CPU tasks into the actors (it fuses only
#: operators with equal resource requests), so projection scales apart from the encoder.
ENCODER_MEMORY = 1 << 30


@dataclass
class DatasetResult:
    """What a distributed run did: rows and inputs written now, inputs skipped because `resume`
    found them, the failed inputs as (source, one-line reason), and the part files written."""

    rows: int = 0
    inputs: int = 0
    resumed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def is_uri(text: str) -> bool:
    """Whether an input names a file through a URI scheme (``s3://…``, ``gs://…``, ``file://…``)."""
    return "://" in text


def expand_sources(items: Sequence[str | os.PathLike]) -> list[str]:
    """Input items → structure files: local items as `holoprot.io.inputs.expand_inputs` (files,
    folders, globs, @lists); a URI is a file, or a folder searched recursively for structure files.

    Raises:
        InputError: an item that names nothing.
    """
    from holoprot.errors import InputError
    from holoprot.io.inputs import expand_inputs, is_structure_file

    sources: list[str] = []
    for item in map(str, items):
        if not is_uri(item):
            sources.extend(str(p) for p in expand_inputs([item]))
            continue
        try:
            fs, path = pafs.FileSystem.from_uri(item)
            info = fs.get_file_info(path)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(item, f"cannot open ({exc})") from None
        scheme = item.split("://", 1)[0]
        if info.type == pafs.FileType.File:
            sources.append(item)
        elif info.type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(f.path for f in found if f.is_file and is_structure_file(f.path))
            if not files:
                raise InputError(item, "directory holds no structure files")
            sources.extend(f"{scheme}://{f}" for f in files)
        else:
            raise InputError(item, "no such file or directory")
    return list(dict.fromkeys(sources))


_POSITION = [(ROW_COLUMN, pa.int64()), (ROWS_COLUMN, pa.int64())]


def projected_schema(dim: int) -> pa.Schema:
    """Rows between the projection tasks and the encoder: identity, coefficients, error, and
    each row's position in its input."""
    return pa.schema(
        [
            *IDENTITY_SCHEMA,
            vector_field("coefficients", dim),
            (ERROR_COLUMN, pa.string()),
            *_POSITION,
        ]
    )


def _failure_row(source: str, message: str, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{"source_path": source, ERROR_COLUMN: message}], schema=schema)


def _block_bytes(chunk_residues: int, dim: int) -> int:
    """Ray Data's target block size for a run: a chunk's coefficients, so each chunk of a
    projection task leaves it as a block of its own (the whole input was one block before)."""
    return chunk_residues * dim * 4


def _fetch(fs: pafs.FileSystem, path: str, local: Path, source: str) -> None:
    """Copy a remote file to `local` in chunks, refusing it past `max_structure_bytes()`."""
    limit = max_structure_bytes()
    size = 0
    with fs.open_input_stream(path) as stream, open(local, "wb") as out:
        while chunk := stream.read(1 << 22):
            size += len(chunk)
            if size > limit:
                raise InputError(source, size_limit_message(limit))
            out.write(chunk)


def _project_one(
    source: str, settings: ProjectionSettings, schema: pa.Schema
) -> Iterator[pa.Table]:
    """The projected rows of one input, a chunk at a time."""
    if not is_uri(source):
        for chunk in project_chunks(source, settings):
            yield _projected_rows(chunk.identity, chunk, schema)
        return
    # fetch to a temporary file of the same name, so the structure id is the same
    fs, path = pafs.FileSystem.from_uri(source)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        _fetch(fs, path, local, source)
        try:
            for chunk in project_chunks(local, settings):
                paths = repeated_string(source, chunk.identity.num_rows)
                yield _projected_rows(
                    chunk.identity.set_column(1, "source_path", paths), chunk, schema
                )
        except HoloprotError as exc:
            raise HoloprotError(str(exc).replace(str(local), source)) from None


def _projected_rows(identity: pa.Table, chunk: Any, schema: pa.Schema) -> pa.Table:
    n = identity.num_rows
    columns = [
        vector_array(chunk.coefficients),
        pa.nulls(n, pa.string()),
        numeric_array(np.arange(chunk.start, chunk.start + n, dtype=np.int64)),
        numeric_array(np.full(n, chunk.total, dtype=np.int64)),
    ]
    names = ["coefficients", ERROR_COLUMN, ROW_COLUMN, ROWS_COLUMN]
    for name, column in zip(names, columns, strict=True):
        identity = identity.append_column(schema.field(name), [column])
    return identity


def project_batch(batch: pa.Table, settings: ProjectionSettings) -> Iterator[pa.Table]:
    """Ray Data CPU task: parse and project each file of ``batch["path"]``, yielding its rows a
    chunk at a time; a failure is one row with `source_path`, the reason in ``error`` and nulls
    elsewhere (after the rows of the chunks done, if any: the datasink drops those)."""
    from holoprot._util.devices import set_numba_threads

    set_numba_threads(1)
    schema = projected_schema(settings.basis.dim)
    for source in batch.column("path").to_pylist():
        try:
            yield from _project_one(source, settings, schema)
        except HoloprotError as exc:
            yield _failure_row(source, str(exc), schema)
        except (OSError, pa.ArrowException) as exc:
            yield _failure_row(source, f"{source}: cannot read ({exc})", schema)
        except MemoryError:
            yield _failure_row(source, f"{source}: out of memory while processing it", schema)


class Encoder:
    """Ray Data actor: the H-(V)AE encoder, one model per actor, on the actor's GPU if it has one.

    Args:
        weights: weights name or path (a path must be readable on every node).
        sha256: the weights' checksum as the driver saw it (checked, so every node uses the same).
        frames: also output the 3x3 frame.
        batch_size: neighbourhoods per encoder call.
        device: ``cpu`` or ``cuda``.
        threads: the encoder's CPU threads.
        precision: ``fp32`` or ``bf16`` (as for `Embedder`).
    """

    def __init__(
        self,
        weights: str,
        sha256: str,
        frames: bool,
        batch_size: int,
        device: str,
        threads: int,
        precision: str = "fp32",
    ) -> None:
        from holoprot.embedding.embedder import Embedder

        self.embedder = Embedder(weights, device, batch_size, precision=precision)
        self.embedder.use_threads(threads)
        if self.embedder.weights_sha256 != sha256:
            raise HoloprotError(f"weights {weights}: this node holds other weights ({sha256})")
        self.frames = frames
        schema = self.embedder.schema(frames)
        self.schema = pa.schema([*schema, (ERROR_COLUMN, pa.string()), *_POSITION])

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Projected rows (`projected_schema`) → identity, latent [, frame], error, position."""
        ok = pc.is_null(batch.column(ERROR_COLUMN))
        good, bad = batch.filter(ok), batch.filter(pc.invert(ok))
        n = good.num_rows
        coefficients = np.array(good.column("coefficients").combine_chunks().flatten())
        emb = self.embedder.embed_coefficients(coefficients.reshape(n, self.embedder.basis.dim))
        columns: dict[str, Any] = {name: good.column(name) for name in _IDENTITY}
        columns["latent"] = vector_array(emb.latent)
        if self.frames:
            columns["frame"] = vector_array(emb.frame.reshape(n, 9))
        columns[ERROR_COLUMN] = pa.nulls(n, pa.string())
        columns[ROW_COLUMN] = good.column(ROW_COLUMN)
        columns[ROWS_COLUMN] = good.column(ROWS_COLUMN)
        encoded = pa.Table.from_pydict(columns, schema=self.schema)
        failed = pa.Table.from_pydict(
            {"source_path": bad.column("source_path"), ERROR_COLUMN: bad.column(ERROR_COLUMN)}
        )
        return pa.concat_tables([encoded, failed], promote_options="default").cast(self.schema)


def _filesystem(out_dir: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(out_dir):
        return pafs.FileSystem.from_uri(out_dir)
    return pafs.LocalFileSystem(), str(Path(out_dir).resolve())


def _part_files(fs: pafs.FileSystem, root: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(
        i.path
        for i in infos
        if i.is_file and i.base_name.startswith(PART_PREFIX) and i.base_name.endswith(".parquet")
    )


def written_sources(out_dir: str, schema: pa.Schema) -> set[str]:
    """Inputs whose rows are in the part files of `out_dir` (checked to match `schema`, metadata
    included: a dataset of other weights or settings cannot be continued)."""
    fs, root = _filesystem(out_dir)
    done: set[str] = set()
    for path in _part_files(fs, root):
        try:
            with fs.open_input_file(path) as f:
                file = pq.ParquetFile(f)
                existing = file.schema_arrow
                sources = file.read(columns=["source_path"]).column(0).unique().to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise HoloprotError(f"{path}: cannot resume from it ({exc})") from exc
        if existing.remove_metadata() != schema.remove_metadata():
            raise HoloprotError(f"{path}: cannot resume, its columns differ from this run's")
        if existing.metadata != schema.metadata:
            raise HoloprotError(
                f"{path}: cannot resume, it was made with other settings or weights"
            )
        done.update(sources)
    return done


def _digest(sources: list[str]) -> str:
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:24]


def _whole_inputs(good: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The rows of the inputs `good` holds whole, in input order (inputs as they first appear,
    each one's rows by index), and the rows of the others."""
    if good.num_rows == 0:
        return good, good
    counts = good.group_by("source_path").aggregate([(ROW_COLUMN, "count"), (ROWS_COLUMN, "max")])
    arrived = zip(
        counts.column("source_path").to_pylist(),
        counts.column(f"{ROW_COLUMN}_count").to_pylist(),
        counts.column(f"{ROWS_COLUMN}_max").to_pylist(),
        strict=True,
    )
    whole = [source for source, n, total in arrived if n == total]
    mask = pc.is_in(good.column("source_path"), value_set=pa.array(whole, pa.string()))
    return _in_input_order(good.filter(mask)), good.filter(pc.invert(mask))


def _in_input_order(rows: pa.Table) -> pa.Table:
    sources = rows.column("source_path").to_pylist()
    rank = {s: i for i, s in enumerate(dict.fromkeys(sources))}
    index = rows.column(ROW_COLUMN).to_numpy()
    order = np.lexsort((index, np.array([rank[s] for s in sources])))
    return rows.take(order)


def _runs(partial: pa.Table) -> Iterator[tuple[str, int, int, pa.Table]]:
    """(source, first row, input's rows, rows) of each run of consecutive rows of an input."""
    if partial.num_rows == 0:
        return
    partial = _in_input_order(partial)
    sources = partial.column("source_path").to_pylist()
    index = partial.column(ROW_COLUMN).to_numpy()
    totals = partial.column(ROWS_COLUMN).to_numpy()
    breaks = [0]
    breaks += [
        i
        for i in range(1, len(index))
        if sources[i] != sources[i - 1] or index[i] != index[i - 1] + 1
    ]
    breaks.append(len(index))
    for a, b in zip(breaks[:-1], breaks[1:], strict=True):
        yield sources[a], int(index[a]), int(totals[a]), partial.slice(a, b - a)


def _covers(runs: dict[int, tuple[int, int, str]]) -> bool:
    """Whether runs {first row: (rows, input's rows, file)} hold every row of the input once."""
    row = 0
    for start in sorted(runs):
        if start != row:
            return False
        row += runs[start][0]
    return row == runs[min(runs)][1]


def _datasink_class() -> type:
    from ray.data import Datasink

    class PartFileDatasink(Datasink):
        """Writes each write task's whole inputs to one part file and the other rows to hidden
        pieces, joins each input's pieces into a part of its own at the end; collects the
        failures."""

        def __init__(self, out_dir: str, schema: pa.Schema, rows_per_part: int) -> None:
            self.out_dir = out_dir
            self.schema = schema
            self.rows_per_part = rows_per_part
            self.result = DatasetResult()

        @property
        def min_rows_per_write(self) -> int:
            """Ray Data gathers whole blocks up to this many rows into one write task."""
            return self.rows_per_part

        def on_write_start(self, schema: pa.Schema | None = None) -> None:
            """Create the folder; delete the pieces a killed run left."""
            fs, root = _filesystem(self.out_dir)
            fs.create_dir(root, recursive=True)
            for info in fs.get_file_info(pafs.FileSelector(root)):
                if info.is_file and info.base_name.startswith(PIECE_PREFIX):
                    fs.delete_file(info.path)

        def write(self, blocks: Iterable[Any], ctx: Any) -> dict:
            from ray.data.block import BlockAccessor

            tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
            table = pa.concat_tables([t for t in tables if t.num_rows])
            failed = table.filter(pc.is_valid(table.column(ERROR_COLUMN)))
            whole, partial = _whole_inputs(table.filter(pc.is_null(table.column(ERROR_COLUMN))))
            sources = sorted(set(whole.column("source_path").to_pylist()))
            out = {
                "rows": whole.num_rows,
                "inputs": len(sources),
                "failures": list(
                    zip(
                        failed.column("source_path").to_pylist(),
                        failed.column(ERROR_COLUMN).to_pylist(),
                        strict=True,
                    )
                ),
                "file": None,
                "pieces": [],
            }
            if whole.num_rows:
                out["file"] = self._write(whole, f"{PART_PREFIX}{_digest(sources)}")
            for source, start, total, rows in _runs(partial):
                name = self._write(rows, f"{PIECE_PREFIX}{_digest([source])}-{start:012d}")
                out["pieces"].append((source, start, rows.num_rows, total, name))
            return out

        def _write(self, rows: pa.Table, stem: str) -> str:
            """`rows` as ``<stem>.parquet`` (written under a temporary name, then renamed)."""
            fs, root = _filesystem(self.out_dir)
            tmp = f"{root}/.{stem.lstrip('.')}.parquet.tmp-{os.getpid()}"
            pq.write_table(rows.select(self.schema.names).cast(self.schema), tmp, filesystem=fs)
            fs.move(tmp, f"{root}/{stem}.parquet")
            return f"{root}/{stem}.parquet"

        def _join(self, source: str, pieces: list[str]) -> str:
            """The pieces of one input, in order, as its part file; a row group at a time."""
            fs, root = _filesystem(self.out_dir)
            name = f"{root}/{PART_PREFIX}{_digest([source])}.parquet"
            tmp = f"{root}/.{PART_PREFIX}{_digest([source])}.parquet.tmp-{os.getpid()}"
            with pq.ParquetWriter(tmp, self.schema, filesystem=fs) as writer:
                for piece in pieces:
                    with fs.open_input_file(piece) as f:
                        file = pq.ParquetFile(f)
                        for i in range(file.num_row_groups):
                            writer.write_table(file.read_row_group(i))
            fs.move(tmp, name)
            return name

        def on_write_complete(self, write_result: Any) -> None:
            pieces: dict[str, dict[int, tuple[int, int, str]]] = {}
            for r in write_result.write_returns:
                self.result.rows += r["rows"]
                self.result.inputs += r["inputs"]
                self.result.failures.extend(tuple(f) for f in r["failures"])
                if r["file"]:
                    self.result.files.append(r["file"])
                for source, start, n, total, name in r["pieces"]:
                    pieces.setdefault(source, {})[start] = (n, total, name)
            failed = {source for source, _ in self.result.failures}
            fs, _ = _filesystem(self.out_dir)
            for source, runs in pieces.items():
                starts = sorted(runs)
                if source not in failed and _covers(runs):
                    self.result.files.append(self._join(source, [runs[s][2] for s in starts]))
                    self.result.rows += runs[starts[0]][1]
                    self.result.inputs += 1
                elif source not in failed:
                    message = f"{source}: not all of its rows reached the writer; rerun it"
                    self.result.failures.append((source, message))
                for start in starts:
                    fs.delete_file(runs[start][2])

    return PartFileDatasink


def _ray():
    try:
        import ray
    except ImportError:
        raise HoloprotError(
            "--engine ray needs Ray: pip install 'holoprot[ray]' (or 'ray[data]')"
        ) from None
    return ray


def embed_dataset(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    weights: str | os.PathLike = "default",
    *,
    frames: bool = False,
    chains: Sequence[str] | None = None,
    model: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    batch_size: int = 512,
    files_per_task: int = 4,
    rows_per_part: int = 65_536,
    chunk_residues: int = CHUNK_RESIDUES,
    resume: bool = False,
    overwrite: bool = False,
    precision: str = "fp32",
    verbose: bool = False,
) -> DatasetResult:
    """Embed every residue of `inputs` on a Ray cluster into a Parquet dataset in `out_dir`.

    Args:
        inputs: files, folders, globs, @lists, or URIs of files or folders.
        out_dir: output folder (local, or a URI pyarrow can write to); must hold no part files
            unless `resume`.
        weights: name (looked up on each node) or path (must be readable on every node).
        frames, chains, model: as for `holoprot.embed_table`.
        address: Ray cluster to join (``auto``, ``ray://host:10001``); default: the running
            Ray session, else a local one.
        workers: encoder actors (fixed pool); default an autoscaling pool of 1 to one per GPU
            (``gpus_per_worker`` each), or on CPU clusters one per CPU less one.
        gpus_per_worker: GPUs per encoder actor; default 1 when the cluster has GPUs, else 0.
        batch_size: neighbourhoods per encoder call.
        files_per_task: input files per parse-and-project task.
        rows_per_part: rows gathered into one part file before it is written (65,536 rows of
            128-d latents: about 40 MB; whole inputs, so a few more, or an input of its own).
        chunk_residues: residues of a file projected at once, and so the rows of a block.
        resume: skip inputs already in `out_dir`.
        overwrite: replace a dataset in `out_dir`: its part files are removed once this run has
            written its own (a run stopped before then leaves both; rerun with `overwrite`).
        precision: ``fp32`` or ``bf16`` (as for `Embedder`; refused when a worker node's device
            has no bfloat16 hardware).
        verbose: show Ray's INFO logs and progress bars (otherwise warnings and errors only).

    Returns:
        a `DatasetResult`; failed inputs are listed there and never stop the run.
    """
    from holoprot.embedding.embedder import Embedder

    if min(batch_size, files_per_task, rows_per_part, chunk_residues, workers or 1) < 1:
        raise HoloprotError(
            "batch size, files per task, rows per part, chunk residues and workers must be > 0"
        )
    if resume and overwrite:
        raise HoloprotError("--resume and --overwrite exclude each other")
    check_precision_name(precision)
    ray = _ray()
    sources = expand_sources(inputs)
    # The driver's embedder gives the settings and the schema; the actors encode (at `precision`).
    embedder = Embedder(weights, "cpu", batch_size, chunk_residues=chunk_residues)
    schema = embedder.schema(frames, precision)
    out_dir = str(out_dir)
    fs, root = _filesystem(out_dir)
    done: set[str] = set()
    old_parts = _part_files(fs, root)
    if resume:
        done = written_sources(out_dir, schema)
    elif old_parts and not overwrite:
        raise HoloprotError(
            f"{out_dir}: holds a dataset already (use --resume, --overwrite, or another folder)"
        )
    todo = [s for s in sources if s not in done]
    result = DatasetResult(resumed=len(sources) - len(todo))
    if todo:
        with _ray_stderr(verbose):
            result = _connect_and_run(
                ray,
                address,
                verbose,
                result.resumed,
                todo,
                out_dir,
                embedder,
                weights,
                frames=frames,
                chains=chains,
                model=model,
                workers=workers,
                gpus_per_worker=gpus_per_worker,
                batch_size=batch_size,
                files_per_task=files_per_task,
                rows_per_part=rows_per_part,
                precision=precision,
            )
    if overwrite:
        for path in sorted(set(old_parts) - set(result.files)):
            fs.delete_file(path)
    return result


def _connect_and_run(
    ray: Any, address: str | None, verbose: bool, resumed: int, *args: Any, **kwargs: Any
) -> DatasetResult:
    """`_run` on the cluster at `address` (joined here, and left if this call joined it)."""
    started = not ray.is_initialized()
    if started:
        _connect(ray, address, verbose)
    try:
        written = _run(ray, *args, verbose=verbose, **kwargs)
    finally:
        if started:
            ray.shutdown()
    written.resumed = resumed
    return written


@contextlib.contextmanager
def _ray_stderr(verbose: bool) -> Iterator[None]:
    """Without `verbose`, what Ray's C++ core writes to this process's stderr (file descriptor 2:
    connection retries, warnings, actor notices) goes to a temporary file, deleted afterwards;
    Python's `sys.stderr` (holoprot's own lines) keeps the terminal where it is file
    descriptor 2."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd, log = tempfile.mkstemp(prefix="holoprot-ray-", suffix=".log")
    os.dup2(fd, 2)
    os.close(fd)
    old = sys.stderr
    try:
        swap = old.fileno() == 2
    except (AttributeError, OSError, ValueError):  # captured (tests, notebooks): not fd 2
        swap = False
    if swap:
        sys.stderr = open(os.dup(saved), "w", encoding=old.encoding, errors="replace")  # noqa: SIM115
    try:
        yield
    finally:
        if swap:
            sys.stderr.close()
            sys.stderr = old
        os.dup2(saved, 2)
        os.close(saved)
        Path(log).unlink(missing_ok=True)


def _connect(ray: Any, address: str | None, verbose: bool) -> None:
    """`ray.init` (joining `address`, or a local Ray), after the checks whose failure is final:
    one HoloprotError naming the address instead of Ray's retries and warnings."""
    if address is not None and ":" in address and "://" not in address:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise HoloprotError(
                f"--address {address}: no Ray cluster answers there ({exc}); start one with"
                " `ray start --head`, or check the address"
            ) from None
        _check_authentication(address)
    level = logging.INFO if verbose else logging.WARNING
    try:
        ray.init(address=address, logging_level=level, log_to_driver=verbose)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HoloprotError(f"--address {where}: cannot start or join Ray ({reason})") from None


def _check_authentication(address: str) -> None:
    """Ask the head's GCS once for the cluster id: a head with token authentication refuses a
    client without its token at once here, where `ray.init` would retry for ~20 s. Any other
    failure is left to `ray.init` (this uses Ray's internal `GcsClient`, where it exists)."""
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return
    try:
        GcsClient(address=address, cluster_id=None)
    except Exception as exc:  # Ray's AuthenticationError; others are retried by ray.init
        if "auth" not in type(exc).__name__.lower():
            return
        reason = " ".join(str(exc).split())
        raise HoloprotError(
            f"--address {address}: the Ray cluster refused this client ({reason})"
        ) from None


def _run(
    ray: Any,
    todo: list[str],
    out_dir: str,
    embedder: Any,
    weights: str | os.PathLike,
    *,
    frames: bool,
    chains: Sequence[str] | None,
    model: int | None,
    workers: int | None,
    gpus_per_worker: float | None,
    batch_size: int,
    files_per_task: int,
    rows_per_part: int,
    precision: str,
    verbose: bool,
) -> DatasetResult:
    from ray.data import ActorPoolStrategy, DataContext

    resources = ray.cluster_resources()
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if resources.get("GPU", 0) > 0 else 0.0
    if workers is not None:
        compute = ActorPoolStrategy(size=workers)
    elif gpus_per_worker > 0:
        most = max(1, int(resources.get("GPU", 0) // gpus_per_worker))
        compute = ActorPoolStrategy(min_size=1, max_size=most)
    else:
        compute = ActorPoolStrategy(min_size=1, max_size=max(1, int(resources["CPU"]) - 1))
    text = str(weights)
    if os.sep in text or Path(text).exists():  # a path: the same absolute path on every node
        text = str(Path(text).resolve())
    device = "cuda" if gpus_per_worker > 0 else "cpu"
    if precision == "bf16":  # asked of a worker node, so that a refusal is one line, not N actors'
        check = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(check_precision)
        try:
            ray.get(check.remote(precision, device))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, HoloprotError):
                raise exc.cause from None
            raise
    encoder_args = {
        "weights": text,
        "sha256": embedder.weights_sha256,
        "frames": frames,
        "batch_size": batch_size,
        "device": device,
        "threads": 1,
        "precision": precision,
    }
    settings = embedder.settings(model, chains)
    if not verbose:  # Ray Data's console handler: errors only (its log file keeps the rest)
        for handler in logging.getLogger("ray.data").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    saved = ctx.target_max_block_size, ctx.enable_progress_bars
    ctx.target_max_block_size = _block_bytes(settings.chunk_residues, settings.basis.dim)
    ctx.enable_progress_bars = verbose
    try:
        blocks = max(1, -(-len(todo) // files_per_task))
        ds = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=blocks)
        ds = ds.map_batches(
            project_batch,
            fn_kwargs={"settings": settings},
            batch_size=files_per_task,
            batch_format="pyarrow",
            num_cpus=1,
        )
        ds = ds.map_batches(
            Encoder,
            fn_constructor_kwargs=encoder_args,
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=compute,
            num_cpus=1,
            num_gpus=gpus_per_worker,
            memory=ENCODER_MEMORY,
        )
        sink = _datasink_class()(out_dir, embedder.schema(frames, precision), rows_per_part)
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
    finally:
        ctx.target_max_block_size, ctx.enable_progress_bars = saved
    return sink.result


__all__ = ["DatasetResult", "Encoder", "embed_dataset", "expand_sources", "project_batch"]
