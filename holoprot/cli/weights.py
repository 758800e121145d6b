"""`holoprot weights`: the named weights that `--weights NAME` finds."""

from __future__ import annotations

import typer

from holoprot.cli._common import app, user_errors
from holoprot.errors import HoloprotError


@app.command("weights")
def weights_command() -> None:
    """List the available named weights: name, latent size, sha256 and where each was found."""
    from holoprot.model.weights import DEFAULT_WEIGHTS, list_weights

    with user_errors():
        found = list_weights()
        if not found:
            raise HoloprotError("no weights found (set HOLOPROT_WEIGHTS_PATH)")
        typer.echo("name\tlatent\tsha256\tpath")
        for w in found:
            name = f"{w.name} (default)" if w.name == DEFAULT_WEIGHTS else w.name
            typer.echo(f"{name}\t{w.latent_dim}\t{w.sha256}\t{w.path}.safetensors")
