"""Helpers shared by the benchmark scripts: machine description, inputs, Markdown rows."""

from __future__ import annotations

import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "data" / "structures-matched"
FALLBACK_INPUTS = (REPO / "examples" / "structures", REPO / "tests" / "data" / "structures")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mb(kilobytes: int) -> float:
    return kilobytes / 1024


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def default_structures() -> list[str]:
    """The BM5 corpus when unpacked, else the small structures shipped with the repository."""
    if DEFAULT_CORPUS.is_dir():
        return [str(DEFAULT_CORPUS)]
    return [str(p) for p in FALLBACK_INPUTS]


def structure_files(items: list[str] | None, max_files: int) -> list[str]:
    """Absolute structure paths from CLI-style items, first `max_files` (0 = all)."""
    from holoprot.io.inputs import expand_inputs

    paths = [str(p.resolve()) for p in expand_inputs(items or default_structures())]
    return paths[:max_files] if max_files > 0 else paths
