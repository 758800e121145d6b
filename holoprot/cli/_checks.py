"""Checks the commands run before the first input is parsed: option values and the output
location (the inputs' structure ids: `holoprot.io.inputs.check_unique_ids`). Each failure is one
HoloprotError line naming the option or file and the problem; nothing has been written when it
is raised.

Output policy (``holoprot zernike`` / ``embed``): an existing output file, or the partial rows a
killed run left in ``<output>.partial/``, are never replaced or deleted unless ``--overwrite``
(start afresh) or ``--resume`` (keep them and add the missing inputs) says so.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from holoprot.errors import HoloprotError


def check_number(
    option: str,
    value: float | None,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> None:
    """`value` (skipped when None) must be finite, ≥ `minimum`, > `above` and ≤ `maximum`."""
    if value is None:
        return
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    wanted = f"a finite number {' and '.join(bounds)}" if bounds else "a finite number"
    if isinstance(value, int) and not isinstance(value, bool):
        wanted = wanted.replace("a finite number", "an integer")
    bad = (
        not math.isfinite(value)
        or (minimum is not None and value < minimum)
        or (above is not None and value <= above)
        or (maximum is not None and value > maximum)
    )
    if bad:
        raise HoloprotError(f"{option} {value}: expected {wanted}")


def parse_chains(text: str | None) -> list[str] | None:
    """`--chains A,B` → ['A', 'B'] (None when not given); empty entries are refused."""
    if text is None:
        return None
    chains = [c.strip() for c in text.split(",")]
    if not all(chains):
        raise HoloprotError(f"--chains {text!r}: expected chain ids separated by commas, e.g. A,B")
    return chains


def parse_channels(text: str) -> tuple[str, ...]:
    """`--channels C,N,O,S` → ('C', 'N', 'O', 'S'): distinct element symbols of 1–2 letters."""
    channels = tuple(c.strip() for c in text.split(","))
    bad = [c for c in channels if not (c.isascii() and c.isalpha() and len(c) <= 2)]
    if bad or len(set(c.upper() for c in channels)) != len(channels):
        raise HoloprotError(
            f"--channels {text!r}: expected distinct element symbols separated by commas,"
            " e.g. C,N,O,S"
        )
    return channels


def partial_dir(output: Path) -> Path:
    """Where a run writing `output` keeps its rows until it finishes (see holoprot.io.output)."""
    from holoprot.io.output import STAGING_DIR, is_dataset_output

    if is_dataset_output(output):
        return output / STAGING_DIR
    return output.with_name(output.name + ".partial")


def check_output_file(
    output: Path, *, overwrite: bool, resume: bool, resumable: bool = True
) -> None:
    """The output must be a file name in an existing, writable folder, and must not hold a previous
    result (file or, when `resumable`, a partial run) unless `overwrite` or `resume` allows it."""
    if overwrite and resume:
        raise HoloprotError("--overwrite and --resume: give one of them, not both")
    names = [p.name for p in output.iterdir()] if output.is_dir() else []
    if names and not any(n.startswith("part-") or n == "_temporary" for n in names):
        raise HoloprotError(
            f"{output}: is a folder that holds no holoprot dataset; name a new folder or a"
            " .parquet file"
        )
    folder = output.parent
    if not folder.is_dir():
        raise HoloprotError(f"{folder}: output folder does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HoloprotError(f"{output}: cannot write in {folder} ({reason})") from None
    os.close(fd)
    os.unlink(probe)
    if resume or overwrite:
        return
    if output.exists():
        if not resumable:
            raise HoloprotError(f"{output}: already exists, kept (pass --overwrite to replace it)")
        raise HoloprotError(
            f"{output}: already exists, kept (pass --overwrite to replace it, or --resume to keep"
            " its rows and add the missing inputs)"
        )
    if not resumable:
        return
    parts = partial_dir(output)
    if parts.exists():
        raise HoloprotError(
            f"{parts}: holds the rows of an unfinished run, kept (pass --resume to continue it, or"
            " --overwrite to discard them)"
        )


def check_output_folder(out: Path, *, overwrite: bool) -> None:
    """An output folder (created later, atomically) must not exist unless `overwrite`, and the
    nearest existing folder above it must be writable."""
    if out.exists() and not overwrite:
        raise HoloprotError(f"{out}: already exists, kept (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise HoloprotError(f"{out}: is a file, expected an output folder")
    above = out.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir() or not os.access(above, os.W_OK | os.X_OK):
        raise HoloprotError(f"{out}: cannot write in {above}")


def check_resume_inputs(output: Path, stored: set[str], paths: Sequence[str]) -> None:
    """With --resume, the stored rows must all belong to this run's inputs (none would be lost)."""
    extra = sorted(stored - set(paths))
    if extra:
        raise HoloprotError(
            f"{output}: holds rows of {len(extra)} input(s) not given to this run (e.g."
            f" {extra[0]}); give the same inputs to --resume, or --overwrite to start afresh"
        )
