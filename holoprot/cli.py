"""The `holoprot` command line: a thin Typer layer over the Python API.

Exit codes: 0 success; 1 an error (one line on stderr, nothing written); 3 finished with
`--skip-errors` but some inputs were skipped (they are listed; the output holds all the others).
Tracebacks only with `holoprot --debug` or HOLOPROT_DEBUG=1 (see holoprot.reporting).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from holoprot.allocator import tune_malloc
from holoprot.devices import passive_thread_waits
from holoprot.errors import HoloprotError
from holoprot.reporting import DEBUG_KEY, ReportingGroup, print_error
from holoprot.validation import check_number, check_output_file, check_resume_inputs

if TYPE_CHECKING:  # the heavy modules are imported by the commands that use them
    import pyarrow as pa
    from rich.progress import Progress

    from holoprot.output import ResidueTableWriter
    from holoprot.pipeline import FailedInput

app = typer.Typer(
    name="holoprot",
    help="Rotation-invariant embeddings of protein residue microenvironments (Holographic-(V)AE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ReportingGroup,
)
stderr = Console(stderr=True)

EXIT_SKIPPED = 3

InputsArg = Annotated[
    list[str],
    typer.Argument(
        help="Structure files (.pdb/.ent/.cif/.mmcif, .gz too), directories, globs or @list.txt."
    ),
]
SkipErrorsOpt = Annotated[
    bool, typer.Option("--skip-errors", help="Skip unreadable inputs, list them at the end.")
]
ModelOpt = Annotated[
    int | None, typer.Option("--model", help="Model number to read (default: the first).")
]
RadiusOpt = Annotated[float, typer.Option("--radius", help="Neighbourhood radius, Å.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Parsing/projection processes (default: none on up to 2 CPUs, else chosen from the"
        " CPUs and inputs; 0 = all in this process).",
    ),
]
OutputOpt = Annotated[
    Path,
    typer.Option(
        "-o",
        "--output",
        help="A .parquet file, or a folder (a name without suffix) for a Parquet dataset"
        " of part-*.parquet files (for big runs).",
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Keep rows already in OUTPUT or left by a killed run."),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace an existing OUTPUT and discard a killed run's rows."),
]


def _version(value: bool) -> None:
    if value:
        from holoprot import __version__

        typer.echo(f"holoprot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (also: HOLOPROT_DEBUG=1).")
    ] = False,
) -> None:
    """Rotation-invariant embeddings of protein residue microenvironments (Holographic-(V)AE)."""
    ctx.meta[DEBUG_KEY] = debug
    tune_malloc()
    passive_thread_waits()


def fail(message: str) -> None:
    """Print one error line and exit with status 1."""
    print_error(message)
    raise typer.Exit(1)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn HoloprotError (and Ctrl-C) into a one-line message and a non-zero exit."""
    try:
        yield
    except HoloprotError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        stderr.print("interrupted; rerun with --resume to continue", highlight=False)
        raise typer.Exit(130) from None


def progress_bar(total: int, what: str) -> Progress:
    """A rich progress bar on stderr, silent when stderr is not a terminal or total ≤ 1."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
        console=stderr,
        transient=True,
        disable=total <= 1 or not sys.stderr.isatty(),
    )


def report_skipped(failures: list[tuple[str, str]]) -> None:
    """List skipped inputs and exit with EXIT_SKIPPED, if there are any."""
    if not failures:
        return
    stderr.print(f"[yellow]skipped {len(failures)} input(s):[/]", highlight=False)
    for _, message in failures:
        stderr.print(f"  {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_SKIPPED)


def stream_to_parquet(
    tables: Iterable[pa.Table | FailedInput],
    writer: ResidueTableWriter,
    order: list[str],
    n_todo: int,
    what: str,
    skip_errors: bool,
) -> tuple[int, list[tuple[str, str]]]:
    """Write each input's table (with a progress bar), then commit the output in input `order`
    and print a one-line summary (files, residues, seconds, residues/s, output size).

    A failed input stops the run (HoloprotError, nothing committed) unless `skip_errors`;
    returns the rows in the output and the skipped (source, message) pairs.
    """
    from holoprot.pipeline import FailedInput

    failures: list[tuple[str, str]] = []
    residues = files = 0
    start = time.perf_counter()
    with progress_bar(n_todo, what) as bar:
        task = bar.add_task("files", total=n_todo, rate="")
        for item in tables:
            bar.advance(task)
            if isinstance(item, FailedInput):
                if not skip_errors:
                    raise HoloprotError(item.message)
                failures.append((item.source, item.message))
                continue
            writer.write(item)
            residues += item.num_rows
            files += 1
            rate = residues / max(time.perf_counter() - start, 1e-9)
            bar.update(task, rate=f"{residues:,} residues, {rate:,.0f} residues/s")
    rows = writer.commit(order)
    seconds = time.perf_counter() - start
    stderr.print(
        f"{what}: {files} files, {residues:,} residues in {seconds:.1f} s"
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
    from holoprot.output import ResidueTableWriter

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
) -> None:
    """Project every residue's neighbourhood onto 3D Zernike functions; one Parquet row each."""
    import pyarrow as pa

    from holoprot.inputs import expand_inputs
    from holoprot.pipeline import FailedInput, ProjectionSettings, iter_projected
    from holoprot.tables import IDENTITY_SCHEMA, file_metadata, vector_array, vector_field
    from holoprot.validation import check_unique_ids, parse_channels
    from holoprot.zernike import ZernikeBasis

    with user_errors():
        check_number("--radius", radius, above=0)
        check_number("--lmax", lmax, minimum=0)
        check_number("--nmax", nmax, minimum=0)
        check_number("--workers", workers, minimum=0)
        check_output_file(output, overwrite=overwrite, resume=resume)
        try:
            basis = ZernikeBasis(lmax, nmax, radius, parse_channels(channels))
        except ValueError as exc:
            raise HoloprotError(f"invalid basis: {exc}") from exc
        if dtype not in ("float32", "float16"):
            raise HoloprotError(f"--dtype {dtype}: expected float32 or float16")
        paths = [str(p) for p in expand_inputs(inputs)]
        check_unique_ids(paths)
        settings = ProjectionSettings(basis=basis, radius=radius, model=model)
        schema = pa.schema([*IDENTITY_SCHEMA, vector_field("coefficients", basis.dim, dtype)])
        meta = file_metadata({"basis": basis.metadata(), "radius": radius, "model": model})
        writer = open_writer(output, schema, meta, paths, resume)
        todo = [p for p in paths if p not in writer.done]

        def tables() -> Iterator[pa.Table | FailedInput]:
            for item in iter_projected(todo, settings, workers=workers):
                if isinstance(item, FailedInput):
                    yield item
                    continue
                try:
                    coefficients = vector_array(item.coefficients, dtype)
                except ValueError as exc:
                    raise HoloprotError(f"{item.source}: {exc}; use --dtype float32") from exc
                yield item.identity.append_column(schema.field("coefficients"), [coefficients])

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
) -> None:
    """Embed every residue's neighbourhood with the H-(V)AE encoder; one Parquet row each."""
    if engine != "local":
        embed_on_ray(
            inputs,
            output,
            weights,
            batch_size,
            frames,
            chains,
            model,
            workers,
            resume,
            engine,
            address,
            gpus_per_worker,
        )
        return
    import torch

    from holoprot.embedding import Embedder, encoder_threads, encoder_workers
    from holoprot.inputs import expand_inputs
    from holoprot.validation import check_unique_ids, parse_chains

    with user_errors():
        check_number("--workers", workers, minimum=0)
        size: int | str = batch_size if batch_size == "auto" else _positive_int(batch_size)
        chain_list = parse_chains(chains)
        check_output_file(output, overwrite=overwrite, resume=resume)
        embedder = Embedder(weights, device, size)
        paths = [str(p) for p in expand_inputs(inputs)]
        check_unique_ids(paths)
        if device == "auto" and not torch.cuda.is_available():
            stderr.print("no GPU found: running on the CPU", highlight=False)
        if workers is None:
            workers = encoder_workers(len(paths))
        if embedder.device.type == "cpu":  # leave the workers' cores to them
            torch.set_num_threads(encoder_threads(workers))
        schema = embedder.schema(frames)
        writer = open_writer(output, schema, schema.metadata, paths, resume)
        todo = [p for p in paths if p not in writer.done]
        tables = embedder.iter_files(
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
    chains: str | None,
    model: int | None,
    workers: int | None,
    resume: bool,
    engine: str,
    address: str | None,
    gpus_per_worker: float | None,
) -> None:
    """`holoprot embed --engine ray`: a Parquet dataset in the folder `output`; failed inputs
    are listed (exit status 3) and never stop the run."""
    from holoprot.distributed import embed_dataset
    from holoprot.validation import parse_chains

    with user_errors():
        if engine != "ray":
            raise HoloprotError(f"--engine {engine}: expected local or ray")
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


def parse_degree_weights(text: str | None) -> tuple[float, ...] | None:
    """``--degree-weights 10,1,1`` as a tuple of floats (their count and range are checked
    against the basis by `holoprot.training.run.train`, before any structure is read)."""
    if text is None:
        return None
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise HoloprotError(
            f"--degree-weights {text}: expected comma-separated numbers, one per degree"
        ) from None


@app.command()
def train(
    structures: InputsArg,
    out: Annotated[Path, typer.Option("--out", help="Run folder (created).")],
    config: Annotated[
        Path | None, typer.Option(help="JSON with model (and training) settings.")
    ] = None,
    vae: Annotated[bool, typer.Option("--vae", help="Variational model (KL warm-up).")] = False,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 10).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default 512).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1e-3).")] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(help="constant (the reference's AE) or cosine (per step, lr to --lr-final)."),
    ] = None,
    lr_final: Annotated[
        float | None, typer.Option(help="Final rate of the cosine / VAE schedule (2.5e-4).")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Linear warm-up of the learning rate over N steps (0).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and batches.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Steps between checkpoints (default 100).")
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(help="Time budget of the training loop, s: stop then; cosine over time."),
    ] = None,
    degree_weights: Annotated[
        str | None,
        typer.Option(
            help="Loss weight per degree l = 0..L, e.g. 10,1,1,1,1,1,1 (default: plain MSE)."
        ),
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            help="Validate and save a moving average of the weights over ~1/(1-D) steps,"
            " e.g. 0.999 (default: none)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint.")
    ] = False,
    init: Annotated[
        str | None,
        typer.Option(help="Start from these weights (name or path), e.g. to continue training."),
    ] = None,
    groups: Annotated[
        Path | None, typer.Option(help="CSV structure_id,group: groups never straddle splits.")
    ] = None,
    group_pattern: Annotated[
        str | None,
        typer.Option(help="Regex on the structure id giving its group, e.g. '^([^_]+)'."),
    ] = None,
    split: Annotated[str, typer.Option(help="Train/validation/test fractions.")] = "0.8,0.1,0.1",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Coefficient cache (default OUT/dataset).")
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """Train an H-(V)AE on your structures; writes OUT/model.safetensors + OUT/model.json."""
    from holoprot.training.run import LR_SCHEDULES
    from holoprot.training.run import train as run_training

    with user_errors():
        check_number("--epochs", epochs, minimum=1)
        check_number("--batch-size", batch_size, minimum=1)
        check_number("--lr", lr, above=0)
        check_number("--checkpoint-every", checkpoint_every, minimum=1)
        check_number("--workers", workers, minimum=0)
        check_number("--lr-final", lr_final, above=0)
        check_number("--warmup-steps", warmup_steps, minimum=0)
        per_degree = parse_degree_weights(degree_weights)
        if lr_schedule is not None and lr_schedule not in LR_SCHEDULES:
            raise HoloprotError(
                f"--lr-schedule {lr_schedule}: choose one of {', '.join(LR_SCHEDULES)}"
            )
        try:
            fractions = tuple(float(f) for f in split.split(","))
        except ValueError:
            fractions = ()
        if (
            len(fractions) != 3
            or not all(math.isfinite(f) and f >= 0 for f in fractions)
            or fractions[0] <= 0
            or fractions[1] <= 0
        ):
            raise HoloprotError(
                f"--split {split}: need three fractions train,val,test (train and val > 0)"
            )
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=stderr,
            disable=not sys.stderr.isatty(),
        )
        tasks: dict[str, int] = {}

        def files_known(n: int) -> None:
            tasks["files"] = progress.add_task("structures", total=n, info="")

        def on_start(trainer) -> None:  # noqa: ANN001
            total = trainer.settings.epochs * trainer.steps_per_epoch
            tasks["steps"] = progress.add_task(
                "training", total=total, completed=trainer.global_step, info=""
            )
            stderr.print(
                f"training on {len(trainer.train_rows)} residues, validating on"
                f" {len(trainer.val_rows)}, {trainer.steps_per_epoch} steps per epoch,"
                f" device {trainer.device}",
                highlight=False,
            )

        def on_step(r: dict) -> None:
            info = (
                f"epoch {r['epoch'] + 1} step {r['step']} loss {r['train_loss']:.4g}"
                f" {r['samples_per_s']:.0f} samples/s"
            )
            if "val_loss" in r:
                info += f" val {r['val_loss']:.4g}"
                if progress.disable:  # no live bar: log validations as lines
                    stderr.print(info, highlight=False)
            progress.update(tasks["steps"], advance=1, info=info)

        with progress:
            model_path = run_training(
                structures,
                out,
                config_file=config,
                vae=vae,
                overrides={
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "lr": lr,
                    "lr_schedule": lr_schedule,
                    "lr_final": lr_final,
                    "warmup_steps": warmup_steps,
                    "seed": seed,
                    "checkpoint_every": checkpoint_every,
                    "max_seconds": max_seconds,
                    "degree_weights": per_degree,
                    "ema_decay": ema_decay,
                },
                device=device,
                resume=resume,
                init=init,
                group_file=groups,
                group_pattern=group_pattern,
                fractions=fractions,  # type: ignore[arg-type]
                cache_dir=cache_dir,
                workers=workers,
                on_file=lambda n: progress.advance(tasks["files"], n),
                on_files_known=files_known,
                on_step=on_step,
                on_start=on_start,
            )
        stderr.print(f"model written to {model_path}", highlight=False)


@app.command("weights")
def weights_command() -> None:
    """List the available named weights: name, latent size, sha256 and where each was found."""
    from holoprot.weights import DEFAULT_WEIGHTS, list_weights

    with user_errors():
        found = list_weights()
        if not found:
            raise HoloprotError("no weights found (set HOLOPROT_WEIGHTS_PATH)")
        typer.echo("name\tlatent\tsha256\tpath")
        for w in found:
            name = f"{w.name} (default)" if w.name == DEFAULT_WEIGHTS else w.name
            typer.echo(f"{name}\t{w.latent_dim}\t{w.sha256}\t{w.path}.safetensors")


def _register_affinity() -> None:
    from holoprot.affinity.commands import register

    register(app)


_register_affinity()


def _register_search() -> None:
    from holoprot.search.commands import register

    register(app)


_register_search()


def main() -> None:
    """Entry point for `python -m holoprot`."""
    app()
