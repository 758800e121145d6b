"""`holoprot zernike` and `holoprot embed`: structure files to one Parquet row per residue,
streamed to an atomic, resumable output (or, with `--engine ray`, a dataset on a Ray cluster)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from holoprot.cli._checks import check_number, check_output_file, check_resume_inputs
from holoprot.cli._common import (
    EXIT_SKIPPED,
    InputsArg,
    ModelOpt,
    OutputOpt,
    OverwriteOpt,
    RadiusOpt,
    ResumeOpt,
    SkipErrorsOpt,
    WorkersOpt,
    app,
    progress_bar,
    report_skipped,
    stderr,
    user_errors,
)
from holoprot.errors import HoloprotError

if TYPE_CHECKING:  # imported by the commands that use them
    import pyarrow as pa

    from holoprot.io.output import ResidueTableWriter
    from holoprot.zernike.pipeline import FailedInput, TableChunk

__all__ = ["EXIT_SKIPPED", "embed", "zernike"]

#: Residues of a file projected at once (hidden: for benchmarks and tests; the rows do not depend
#: on it, memory does: README "Memory").
ChunkOpt = Annotated[
    int | None,
    typer.Option(hidden=True, help="Residues of a file projected at once (default 2048)."),
]


def stream_to_parquet(
    tables: Iterable[TableChunk | FailedInput],
    writer: ResidueTableWriter,
    order: list[str],
    n_todo: int,
    what: str,
    skip_errors: bool,
) -> tuple[int, list[tuple[str, str]]]:
    """Write each input's rows as they come, a chunk at a time (with a progress bar), then
    commit the output in input `order` and print a one-line summary (files, residues, seconds,
    residues/s, output size).

    A failed input stops the run (HoloprotError, nothing committed) unless `skip_errors`;
    returns the rows in the output and the skipped (source, message) pairs.
    """
    from holoprot.zernike.pipeline import FailedInput

    failures: list[tuple[str, str]] = []
    residues = files = 0
    start = time.perf_counter()
    with progress_bar(n_todo, what) as bar:
        task = bar.add_task("files", total=n_todo, rate="")
        for item in tables:
            if isinstance(item, FailedInput):
                if not skip_errors:
                    raise HoloprotError(item.message)
                bar.advance(task)
                failures.append((item.source, item.message))
                continue
            writer.write(item.table, last=item.last)
            residues += item.table.num_rows
            if item.last:
                files += 1
                bar.advance(task)
            rate = residues / max(time.perf_counter() - start, 1e-9)
            bar.update(task, rate=f"{residues:,} residues, {rate:,.0f} residues/s")
    rows = writer.commit(order)
    seconds = time.perf_counter() - start
    stderr.print(
        f"{what}: {files} file{'' if files == 1 else 's'}, {residues:,} residues in {seconds:.1f} s"
        f" ({residues / max(seconds, 1e-9):,.0f} residues/s); {writer.path} holds {rows:,} rows,"
        f" {_size(writer.path) / 1e6:,.1f} MB",
        highlight=False,
    )
    return rows, failures


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


def open_writer(
    output: Path, schema: pa.Schema, meta: dict[bytes, bytes], paths: list[str], resume: bool
) -> ResidueTableWriter:
    """The output's writer; with `resume`, says what was kept and refuses to drop stored rows."""
    from holoprot.io.output import ResidueTableWriter

    writer = ResidueTableWriter(output, schema, meta, resume=resume)
    if resume:
        check_resume_inputs(output, writer.done, paths)
        kept = len(writer.done)
        stderr.print(
            f"resuming: kept the rows of {kept} of {len(paths)} input(s)"
            f" (from {output} and any partial run)",
            highlight=False,
        )
    return writer


@app.command()
def zernike(
    inputs: InputsArg,
    output: OutputOpt,
    model: ModelOpt = None,
    radius: RadiusOpt = 10.0,
    lmax: Annotated[int, typer.Option(help="Highest spherical-harmonic degree.")] = 6,
    nmax: Annotated[int, typer.Option(help="Highest radial order.")] = 20,
    channels: Annotated[str, typer.Option(help="Element channels, comma-separated.")] = "C,N,O,S",
    dtype: Annotated[
        str,
        typer.Option(
            help="Stored coefficients: float32, or float16 (half the file; relative error"
            " <= 4.9e-4, absolute <= 3e-8 below 6.1e-5; readers need Parquet FLOAT16 support).",
        ),
    ] = "float32",
    workers: WorkersOpt = None,
    skip_errors: SkipErrorsOpt = False,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    chunk_residues: ChunkOpt = None,
) -> None:
    """Project every residue's neighbourhood onto 3D Zernike functions; one Parquet row each."""
    import pyarrow as pa

    from holoprot.cli._checks import parse_channels
    from holoprot.io.inputs import check_unique_ids, expand_inputs
    from holoprot.io.tables import IDENTITY_SCHEMA, file_metadata, vector_array, vector_field
    from holoprot.zernike.basis import ZernikeBasis
    from holoprot.zernike.pipeline import (
        CHUNK_RESIDUES,
        FailedInput,
        ProjectionSettings,
        TableChunk,
        iter_projected_chunks,
    )

    with user_errors():
        check_number("--radius", radius, above=0)
        check_number("--lmax", lmax, minimum=0)
        check_number("--nmax", nmax, minimum=0)
        check_number("--workers", workers, minimum=0)
        check_number("--chunk-residues", chunk_residues, minimum=1)
        check_output_file(output, overwrite=overwrite, resume=resume)
        try:
            basis = ZernikeBasis(lmax, nmax, radius, parse_channels(channels))
        except ValueError as exc:
            raise HoloprotError(f"invalid basis: {exc}") from exc
        if dtype not in ("float32", "float16"):
            raise HoloprotError(f"--dtype {dtype}: expected float32 or float16")
        paths = [str(p) for p in expand_inputs(inputs)]
        check_unique_ids(paths)
        chunk = CHUNK_RESIDUES if chunk_residues is None else chunk_residues
        settings = ProjectionSettings(basis=basis, radius=radius, model=model, chunk_residues=chunk)
        schema = pa.schema([*IDENTITY_SCHEMA, vector_field("coefficients", basis.dim, dtype)])
        meta = file_metadata({"basis": basis.metadata(), "radius": radius, "model": model})
        writer = open_writer(output, schema, meta, paths, resume)
        todo = [p for p in paths if p not in writer.done]

        def tables() -> Iterator[TableChunk | FailedInput]:
            for item in iter_projected_chunks(todo, settings, workers=workers):
                if isinstance(item, FailedInput):
                    yield item
                    continue
                try:
                    coefficients = vector_array(item.coefficients, dtype)
                except ValueError as exc:
                    raise HoloprotError(f"{item.source}: {exc}; use --dtype float32") from exc
                table = item.identity.append_column(schema.field("coefficients"), [coefficients])
                yield TableChunk(item.source, table, item.last)

        _, failures = stream_to_parquet(tables(), writer, paths, len(todo), "zernike", skip_errors)
        report_skipped(failures)


@app.command()
def embed(
    inputs: InputsArg,
    output: OutputOpt,
    weights: Annotated[str, typer.Option(help="Weights name or .safetensors path.")] = "default",
    device: Annotated[
        str, typer.Option(help="auto (GPU if present), cpu, cuda or cuda:N.")
    ] = "auto",
    batch_size: Annotated[
        str, typer.Option(help="Neighbourhoods per encoder call, or 'auto' (fit GPU memory).")
    ] = "512",
    frames: Annotated[
        bool, typer.Option("--frames", help="Also write the 3x3 learned frame.")
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            help="Encoder matmuls: fp32, or bf16 where the CPU/GPU has bfloat16 hardware"
            " (latents within ~0.7 % of fp32).",
        ),
    ] = "fp32",
    chains: Annotated[
        str | None, typer.Option(help="Only residues of these chains, e.g. A,B.")
    ] = None,
    model: ModelOpt = None,
    workers: WorkersOpt = None,
    skip_errors: SkipErrorsOpt = False,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    engine: Annotated[
        str,
        typer.Option(help="local, or ray: -o names a dataset folder, --workers encoder actors."),
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (--engine ray; default: local).")
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(help="GPUs per encoder actor (--engine ray; default 1 if the cluster has)."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Ray's own logs and progress (--engine ray).")
    ] = False,
    chunk_residues: ChunkOpt = None,
) -> None:
    """Embed every residue's neighbourhood with the H-(V)AE encoder; one Parquet row each."""
    if engine != "local":
        embed_on_ray(
            inputs,
            output,
            weights,
            batch_size,
            frames,
            precision,
            chains,
            model,
            workers,
            resume,
            overwrite,
            engine,
            address,
            gpus_per_worker,
            verbose,
            chunk_residues,
        )
        return
    from holoprot.cli._checks import parse_chains
    from holoprot.embedding.embedder import Embedder, encoder_threads, encoder_workers
    from holoprot.io.inputs import check_unique_ids, expand_inputs
    from holoprot.zernike.pipeline import CHUNK_RESIDUES

    with user_errors():
        check_number("--workers", workers, minimum=0)
        check_number("--chunk-residues", chunk_residues, minimum=1)
        size: int | str = batch_size if batch_size == "auto" else _positive_int(batch_size)
        chain_list = parse_chains(chains)
        check_output_file(output, overwrite=overwrite, resume=resume)
        chunk = CHUNK_RESIDUES if chunk_residues is None else chunk_residues
        embedder = Embedder(weights, device, size, chunk_residues=chunk, precision=precision)
        paths = [str(p) for p in expand_inputs(inputs)]
        check_unique_ids(paths)
        if device == "auto" and embedder.device == "cpu":
            stderr.print("no GPU found: running on the CPU", highlight=False)
        if workers is None:
            workers = encoder_workers(len(paths))
        if embedder.device == "cpu":  # leave the workers' cores to them
            embedder.use_threads(encoder_threads(workers))
        schema = embedder.schema(frames)
        writer = open_writer(output, schema, schema.metadata, paths, resume)
        todo = [p for p in paths if p not in writer.done]
        tables = embedder.iter_chunks(
            todo, model=model, chains=chain_list, frames=frames, workers=workers
        )
        _, failures = stream_to_parquet(tables, writer, paths, len(todo), "embed", skip_errors)
        stderr.print(f"weights {embedder.weights_name}, device {embedder.device}", highlight=False)
        report_skipped(failures)


def embed_on_ray(
    inputs: list[str],
    output: Path,
    weights: str,
    batch_size: str,
    frames: bool,
    precision: str,
    chains: str | None,
    model: int | None,
    workers: int | None,
    resume: bool,
    overwrite: bool,
    engine: str,
    address: str | None,
    gpus_per_worker: float | None,
    verbose: bool,
    chunk_residues: int | None,
) -> None:
    """`holoprot embed --engine ray`: a Parquet dataset in the folder `output` (replacing one
    there with `overwrite`); failed inputs are listed (exit status 3) and never stop the run."""
    from holoprot.cli._checks import parse_chains
    from holoprot.embedding.distributed import embed_dataset

    with user_errors():
        if engine != "ray":
            raise HoloprotError(f"--engine {engine}: expected local or ray")
        check_number("--chunk-residues", chunk_residues, minimum=1)
        size = 512 if batch_size == "auto" else _positive_int(batch_size)
        result = embed_dataset(
            inputs,
            output,
            weights,
            frames=frames,
            chains=parse_chains(chains),
            model=model,
            address=address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            batch_size=size,
            resume=resume,
            overwrite=overwrite,
            precision=precision,
            verbose=verbose,
            **({} if chunk_residues is None else {"chunk_residues": chunk_residues}),
        )
        kept = f", {result.resumed} input(s) already there" if result.resumed else ""
        stderr.print(
            f"wrote {result.rows} residues of {result.inputs} input(s) to {output}"
            f" ({len(result.files)} part file(s){kept})",
            highlight=False,
            soft_wrap=True,
        )
        report_skipped(result.failures)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise HoloprotError(f"--batch-size {text}: expected a positive integer or 'auto'")
    return value
