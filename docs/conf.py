"""Sphinx configuration of holoprot's documentation: `make docs` builds it into build/docs.

Pages: getting started, the gallery (sphinx-gallery runs every `examples/NN_*.py` at each build
into `auto_examples/`), the method (figures drawn by `_ext/method_figures.py` into
`generated/figures/`), the CLI reference (`_ext/holoprot_cli.py` walks the Typer app), the API
reference (`_ext/toplevel_api.py` lists `holoprot.__all__`; autosummary stubs in
`generated/api/`), the model card and benchmark results (Markdown files of the repository,
included by MyST) and how to cite. `generated/` and `auto_examples/` are git-ignored.
Nothing is downloaded: no intersphinx, no MathJax.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

import holoprot  # noqa: E402

# The examples save their PNGs where HOLOPROT_EXAMPLES_OUT says (as when run from the repository
# root); sphinx-gallery runs them from examples/, so the default is made absolute here.
os.environ.setdefault("HOLOPROT_EXAMPLES_OUT", str(ROOT / "out" / "examples"))

project = "holoprot"
author = "the holoprot authors"
copyright = "2026, the holoprot authors"
release = version = holoprot.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "holoprot_cli",
    "toplevel_api",
    "method_figures",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_ext", "_templates"]
templates_path = ["_templates"]
# Docstrings write `name` for code, as Markdown does.
default_role = "code"

html_theme = "furo"
html_title = f"holoprot {release}"
html_show_sourcelink = False

# ---- API reference ---------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
python_maximum_signature_line_length = 90
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# ---- Markdown pages (MyST) -------------------------------------------------------------------
myst_heading_anchors = 3

# ---- Gallery ---------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Every examples/NN_topic.py runs at each build; a helper module (_name.py) is never shown.
    "filename_pattern": r"/\d\d_[^/]+\.py$",
    "ignore_pattern": r"(__init__|/_[^/]*)\.py$",
    "within_subsection_order": "sphinx_gallery.sorting.FileNameSortKey",
    # Which holoprot objects each example uses (needed by the index page's minigallery).
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("holoprot",),
    # A failing example fails the build, after all examples ran (so CI lists every failure).
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "remove_config_comments": True,
    "show_memory": False,
    "download_all_examples": False,
    # Its pages load scripts from CDNs; each example's page gives its own running time.
    "write_computation_times": False,
}


def _skip_foreign_methods(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options: dict
) -> bool | None:
    """Leave out methods other libraries attach to holoprot's classes (scikit-learn's
    ``set_*_request``): their docstrings refer to the other library's own pages."""
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and callable(obj) and not module.startswith("holoprot"):
        return True
    return None


def setup(app: Sphinx) -> None:
    app.connect("autodoc-skip-member", _skip_foreign_methods)
