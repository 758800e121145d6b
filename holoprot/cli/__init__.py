"""The `holoprot` command line: a thin Typer layer over the Python API.

One module per command group (`embed`: zernike and embed; `train`; `weights`; `affinity`;
`search`) over `_common` (the app, shared options, error exits, progress), `_checks` (option and
output-location checks) and `_reporting` (one-line errors). Importing this package registers the
commands in that order. Imports every other holoprot package, most inside the commands, so that
`holoprot --help` imports neither torch nor pandas.
"""

from holoprot.cli._common import app

# Importing a command module registers its commands, in this order (that of `holoprot --help`).
# isort: off
from holoprot.cli import embed  # noqa: E402, F401
from holoprot.cli import train  # noqa: E402, F401
from holoprot.cli import weights  # noqa: E402, F401
from holoprot.cli import affinity  # noqa: E402, F401
from holoprot.cli import search  # noqa: E402, F401

# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """Entry point for `python -m holoprot`."""
    app()
