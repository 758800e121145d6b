"""The ``holoprot-cli`` directive: every command and option of `holoprot`, from the Typer app.

It walks ``typer.main.get_command(holoprot.cli.app)`` as `--help` does and writes, per command,
a section with its help, its usage and one ``.. option::`` per parameter (under
``.. program:: holoprot COMMAND``, so ``:option:`holoprot embed --frames``` links to it).
sphinx-click cannot serve here: Typer ≥ 0.2x builds its commands on its own copy of click
(``typer._click``), which sphinx-click's ``isinstance(obj, click.Command)`` check refuses.
"""

from __future__ import annotations

import re

import typer
import typer.main
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.parsing import nested_parse_to_nodes

from holoprot.cli import app

#: reST inline markup a help string may contain by accident (`*.parquet`, `a|b`); backquotes are
#: kept: help strings use them, paired, for code.
_RST_SPECIAL = re.compile(r"([*|\\])")


def _escape(text: str) -> str:
    return _RST_SPECIAL.sub(r"\\\1", text)


def _indent(text: str, prefix: str = "   ") -> list[str]:
    return [prefix + line if line.strip() else "" for line in text.splitlines()]


def _command_lines(command: typer.core.TyperCommand, ctx: typer.Context, level: str) -> list[str]:
    """reST of one command: title, help, usage and its parameters (`--help` left out)."""
    path = ctx.command_path
    lines = [path, level * len(path), ""]
    if command.help:
        lines += [*command.help.strip().splitlines(), ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += [".. code-block:: text", "", f"   {usage}", "", f".. program:: {path}", ""]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or param.name == "help":
            continue
        signature, help_text = record
        lines += [f".. option:: {signature.replace(' / ', ', ')}", ""]
        lines += [*_indent(_escape(help_text or "")), ""]
    return lines


class HoloprotCli(SphinxDirective):
    """``.. holoprot-cli::``: the root command, then one section per subcommand."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        root = typer.main.get_command(app)
        ctx = typer.Context(root, info_name="holoprot")
        lines = _command_lines(root, ctx, "-")
        for name in root.list_commands(ctx):
            command = root.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            lines += _command_lines(
                command, typer.Context(command, info_name=name, parent=ctx), "-"
            )
        content = StringList(lines, source="holoprot-cli")
        return nested_parse_to_nodes(self.state, content, allow_section_headings=True)


def setup(sphinx: Sphinx) -> dict[str, object]:
    sphinx.add_directive("holoprot-cli", HoloprotCli)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
