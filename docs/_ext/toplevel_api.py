"""The API page's top-level names, from ``holoprot.__all__`` at each build (Sphinx extension).

`holoprot` imports its names lazily (module ``__getattr__``), so autodoc's ``:members:`` cannot
see them. This writes ``generated/toplevel.inc`` (included by ``api.rst``): a table of every
name with the first paragraph of its docstring, linked to where the package pages document it
(the package whose ``__all__`` exports it, or the module defining it in a package without one),
then the full entry of each name no package page documents (``embed_dataset``, ``tune_malloc``).
Documenting an object twice would give Sphinx two targets for one name. A name added to
``__all__`` appears without editing the docs.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

from sphinx.application import Sphinx

import holoprot


def documented_as(name: str, obj: object) -> str | None:
    """Where the package pages document `obj` (exported as ``holoprot.NAME``), or None."""
    module = getattr(obj, "__module__", "") or ""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "holoprot" or parts[1].startswith("_"):
        return None
    package = importlib.import_module(".".join(parts[:2]))
    exported = getattr(package, "__all__", None)
    if not hasattr(package, "__path__"):  # a plain module such as holoprot.errors
        return f"{package.__name__}.{name}"
    if exported is None:
        return f"{module}.{name}"
    return f"{package.__name__}.{name}" if name in exported else None


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _directive(obj: object) -> str:
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    return "autofunction"


def toplevel_lines() -> list[str]:
    """reST: the linked table of `holoprot`'s public names, then the undocumented ones in full."""
    table = [".. list-table::", "   :widths: 1 3", ""]
    full = []
    for name in holoprot.__all__:
        obj = getattr(holoprot, name)
        if not callable(obj):
            continue
        target = documented_as(name, obj)
        if target is None:
            target = f"holoprot.{name}"
            full += [f".. {_directive(obj)}:: {target}", ""]
        table += [f"   * - :py:obj:`holoprot.{name} <{target}>`", f"     - {_summary(obj)}"]
    return [*table, "", *full]


def _on_builder_inited(app: Sphinx) -> None:
    path = Path(app.srcdir) / "generated" / "toplevel.inc"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(toplevel_lines())
    if path.exists() and path.read_text() == text:  # unchanged: Sphinx keeps its cache
        return
    tmp = path.with_suffix(".inc.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
