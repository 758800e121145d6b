"""The documentation site (docs/, `make docs`): it builds with warnings as errors, which runs
every gallery example (this is where CI executes them); each example writes the files its
docstring promises and shows its figures; the CLI reference lists every command and option of
the Typer app; no page is empty; and a failing example fails the build.

The site is built once per session (a session fixture; it runs every example), into a
temporary folder; sphinx-gallery still writes docs/auto_examples/ and docs/generated/
(git-ignored), as `make docs` does.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from bs4 import BeautifulSoup, Tag

from holoprot.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: The site is built once, by one pytest-xdist worker, the one running every test that starts
#: Ray (the scaling-out example does; test_ray_connect's `ray stop --force` would stop it).
pytestmark = pytest.mark.xdist_group("ray")


@dataclass(frozen=True)
class Site:
    html: Path
    examples_out: Path


def sphinx_build(
    source: Path, out: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess:
    """`sphinx-build -b html -W --keep-going` of `source` into `out`/html (doctrees beside it)."""
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-N"]
    command += ["-d", str(out / "doctrees"), *extra, str(source), str(out / "html")]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="session")  # session: pytest-xdist may run other tests between these
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    out = tmp_path_factory.mktemp("docs")
    examples_out = out / "examples-out"
    env = {**os.environ, "HOLOPROT_EXAMPLES_OUT": str(examples_out)}
    # Every example runs, even one unchanged since a previous `make docs` (sphinx-gallery skips
    # those by their checksum), so that its files land in this build's folder.
    result = sphinx_build(DOCS, out, env, "-D", "sphinx_gallery_conf.run_stale_examples=1")
    assert result.returncode == 0, (
        f"docs build failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    )
    return Site(out / "html", examples_out)


def promised_files(example: Path) -> list[str]:
    """The file names an example's docstring promises under ``$HOLOPROT_EXAMPLES_OUT``: every
    ``NN_name.ext`` after "written to", and ``.ext`` alone meaning the previous name's stem."""
    doc = ast.get_docstring(ast.parse(example.read_text())) or ""
    _, _, promise = doc.partition("written to")
    names: list[str] = []
    for token in re.findall(r"``([^`]+)``", promise):
        if re.fullmatch(r"\d\d_[\w.-]+\.\w+", token):
            names.append(token)
        elif re.fullmatch(r"\.\w+", token) and names:
            names.append(names[-1].rsplit(".", 1)[0] + token)
    return names


def test_examples_exist() -> None:
    assert EXAMPLES, "no examples/NN_*.py: the gallery would be empty"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_writes_what_it_promises(site: Site, example: Path) -> None:
    names = promised_files(example)
    pngs = [n for n in names if n.endswith(".png")]
    assert pngs, (
        f"{example.name}: its docstring promises no PNG 'written to' $HOLOPROT_EXAMPLES_OUT"
    )
    for name in names:
        path = site.examples_out / name
        assert path.is_file() and path.stat().st_size > 0, f"{example.name} did not write {name}"
    for name in pngs:
        assert (site.examples_out / name).read_bytes()[:8] == PNG_MAGIC, f"{name} is not a PNG"
    # sphinx-gallery's own capture of the example's first matplotlib figure, on its page
    shown = site.html / "_images" / f"sphx_glr_{example.stem}_001.png"
    assert shown.read_bytes()[:8] == PNG_MAGIC
    page = (site.html / "auto_examples" / f"{example.stem}.html").read_text()
    assert f"sphx_glr_{example.stem}_001.png" in page


def _text(node: Tag) -> str:
    """A node's words, single-spaced, with Sphinx's typographic quotes made plain again."""
    words = " ".join(node.get_text(" ").split())
    return words.translate(str.maketrans("‘’“”", "''\"\""))


def _section(soup: BeautifulSoup, title: str) -> Tag | None:
    for heading in soup.find_all("h2"):
        if heading.get_text(" ", strip=True).rstrip("#¶ ").strip() == title:
            return heading.find_parent("section")
    return None


def test_cli_reference_lists_every_command_and_option(site: Site) -> None:
    soup = BeautifulSoup((site.html / "cli.html").read_text(), "html.parser")
    root = typer.main.get_command(app)
    commands = {"holoprot": root}
    commands |= {f"holoprot {n}": c for n, c in root.commands.items() if not c.hidden}
    assert len(commands) > 8  # the root and its 8 commands today; none may go missing
    for title, command in commands.items():
        section = _section(soup, title)
        assert section is not None, f"no section '{title}' in the CLI reference"
        if command.help:
            first_words = " ".join(command.help.split()[:6])
            assert first_words in _text(section), title
        documented: dict[str, str] = {}
        for entry in section.select("dl.std.option"):
            if entry.find_parent("section") is not section:
                continue
            description = _text(entry.dd)
            for token in re.split(r"[\s,]+", entry.dt.get_text(" ")):
                documented[token.strip("¶#.")] = description
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            names = [*param.opts, *param.secondary_opts]
            for name in names:
                assert name in documented, f"{title}: {name} missing from the CLI reference"
            if param.help:
                assert documented[names[0]], f"{title} {names[0]}: no description"


def test_no_page_is_empty(site: Site) -> None:
    pages = [
        p
        for p in site.html.rglob("*.html")
        if not p.relative_to(site.html).parts[0].startswith("_")
    ]
    assert len(pages) > 20
    for page in pages:
        if page.name in ("search.html", "genindex.html"):  # filled by JavaScript / by the index
            continue
        soup = BeautifulSoup(page.read_text(), "html.parser")
        article = soup.find("article", role="main")
        assert article is not None, page
        title = article.find("h1")
        words = article.get_text(" ").split()
        title_words = title.get_text(" ").split() if title else []
        assert len(words) - len(title_words) >= 10, f"{page.relative_to(site.html)} is empty"


def test_failing_example_fails_the_build(tmp_path: Path) -> None:
    """The gallery settings of docs/conf.py, on a gallery of one example that raises."""
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "GALLERY_HEADER.rst").write_text("Gallery\n=======\n")
    (examples / "01_broken.py").write_text('"""\nBroken\n======\n"""\n\nraise RuntimeError("x")\n')
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.rst").write_text("Docs\n====\n\n.. toctree::\n\n   auto_examples/index\n")
    (source / "conf.py").write_text(
        "import runpy\n"
        f"conf = runpy.run_path({str(DOCS / 'conf.py')!r})\n"
        "extensions = ['sphinx_gallery.gen_gallery']\n"
        "sphinx_gallery_conf = {**conf['sphinx_gallery_conf'],"
        f" 'examples_dirs': {str(examples)!r}, 'gallery_dirs': 'auto_examples'}}\n"
    )
    result = sphinx_build(source, tmp_path, dict(os.environ))
    assert result.returncode != 0
    # -N asks for no colour, but a forced-colour environment (FORCE_COLOR) may still add ANSI codes.
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert re.search(r"01_broken\.py\S*\s+(unexpectedly )?failed", output), output[-2000:]
