"""What the command line shows when something goes wrong that is not the user's input.

Every exception that reaches the top of a command and is not a HoloprotError (those are already
one line naming the file or option) becomes one line too: an OSError names its file and the
system's reason; anything else is a bug, reported with where to send it. The full traceback is
shown only with ``holoprot --debug ...`` or the environment variable ``HOLOPROT_DEBUG=1``.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from typer.core import TyperGroup

DEBUG_ENV = "HOLOPROT_DEBUG"
DEBUG_KEY = "holoprot.debug"
REPORT_TO = "the holoprot issue tracker"


def print_error(message: str) -> None:
    """One ``error: …`` line on stderr; the message is shown verbatim (no rich markup or emoji
    codes, so ``1abc.pdb:A:45`` or ``[x]`` in a file name print as they are)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, emoji=False).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


def debug_requested(meta: dict[str, Any] | None = None) -> bool:
    """Whether tracebacks were asked for (``--debug`` recorded in `meta`, or HOLOPROT_DEBUG=1)."""
    return bool((meta or {}).get(DEBUG_KEY)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _is_cli_control(exc: BaseException) -> bool:
    """Typer/click's own exceptions (exit, abort, usage errors) pass through untouched."""
    if isinstance(exc, (typer.Exit, typer.Abort)):
        return True
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def one_line(exc: BaseException) -> str:
    """The one-line message for an unexpected exception."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller --batch-size or fewer --workers)"
    from holoprot import __version__

    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return (
        f"internal error ({detail}) in holoprot {__version__}: please report it to {REPORT_TO}"
        f" with the command line and the traceback from rerunning with --debug"
    )


class ReportingGroup(TyperGroup):
    """A Typer group that turns unexpected exceptions into one line and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _is_cli_control(exc) or debug_requested(ctx.meta):
                raise
            from holoprot.errors import HoloprotError

            message = str(exc) if isinstance(exc, HoloprotError) else one_line(exc)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None
