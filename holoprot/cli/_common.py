"""What every command shares: the Typer app and its root options, the option types used by
several commands, the error exits and the progress bar.

Exit codes: 0 success; 1 an error (one line on stderr, nothing written); 3 finished with
`--skip-errors` but some inputs were skipped (they are listed; the output holds all the others).
Tracebacks only with `holoprot --debug` or HOLOPROT_DEBUG=1 (see holoprot.cli._reporting).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from holoprot._util.allocator import tune_malloc
from holoprot._util.devices import passive_thread_waits
from holoprot.cli._reporting import DEBUG_KEY, ReportingGroup, print_error
from holoprot.errors import HoloprotError

if TYPE_CHECKING:  # imported on use, to keep `holoprot --help` fast
    from rich.progress import Progress

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


def overwrite_option(what: str, negatable: bool = False) -> object:
    """The `--overwrite` flag of a command, saying what it replaces (e.g. "an existing OUTPUT");
    `negatable` adds `--no-overwrite` (train-affinity has always had it)."""
    names = ("--overwrite/--no-overwrite",) if negatable else ("--overwrite",)
    return Annotated[bool, typer.Option(*names, help=f"Replace {what}.")]


OverwriteOpt = overwrite_option("an existing OUTPUT and discard a killed run's rows")


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
