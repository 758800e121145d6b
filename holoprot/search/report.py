"""A self-contained HTML page of search hits: per query, the hits table and an interactive 3D
view of the query's environment with every hit's environment superposed on it.

The page embeds 3Dmol.js (`_static/3Dmol-min.js`, BSD-3-Clause, see `_static/PROVENANCE.md`) and
the structures, so it opens offline from a ``file://`` URL: no CDN, no server. In the view the
query is drawn in grey, each hit in its rank's colour (a viridis ramp: first hit dark blue, last
yellow), centre residues as sticks, the query's labelled; a checkbox per hit shows or hides it.
Script errors are caught and written into the page (``<body data-errors=...>``), so a browser
test can read them from the DOM.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from holoprot._util.atomic import write_text_atomic

VIEWER_JS = Path(__file__).parent / "_static" / "3Dmol-min.js"


@dataclass(frozen=True)
class ReportEntry:
    """One environment of a view: the query (`rank` 0) or a hit.

    Attributes:
        label: what the table and the view call it, e.g. ``1abc:A:42 HIS``.
        model: the environment's atoms as PDB or mmCIF text (`fmt` "pdb" or "cif"), already in
            the query's frame (Å).
        centre: the centre residue as (chain, residue number), drawn as sticks and labelled.
        rank, distance: the hit's rank and cosine distance (0 and 0.0 for the query).
        columns: further table cells, e.g. {"rmsd_frame": 0.97} (numbers shown to 3 decimals).
    """

    label: str
    model: str
    centre: tuple[str, int]
    rank: int = 0
    distance: float = 0.0
    fmt: str = "pdb"
    columns: dict[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportQuery:
    """A query residue and its superposed hits (`entries[0]` is the query)."""

    label: str
    entries: Sequence[ReportEntry]


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
.query { display: flex; gap: 1.5em; flex-wrap: wrap; align-items: flex-start; }
.viewer { width: 640px; height: 480px; position: relative; border: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
td.label, th.label { text-align: left; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; }
"""

_SCRIPT = """
document.body.dataset.errors = "";
window.addEventListener("error", function (e) {
  document.body.dataset.errors += (e.message || "error") + "\\n";
});
function rankColour(entry) {
  if (entry.rank === 0) return "#9a9a9a";
  return VIRIDIS[Math.round(entry.shade * (VIRIDIS.length - 1))];
}
function draw(element, entries) {
  const viewer = $3Dmol.createViewer(element, {backgroundColor: "white"});
  const models = entries.map(function (entry) {
    const model = viewer.addModel(entry.model, entry.fmt);
    const colour = rankColour(entry);
    const centre = {chain: entry.centre[0], resi: entry.centre[1]};
    model.setStyle({}, {line: {color: colour}});
    model.setStyle(centre, {stick: {color: colour, radius: entry.rank === 0 ? 0.25 : 0.15}});
    if (entry.rank === 0) {
      viewer.addLabel(entry.label, {fontSize: 11, fontColor: "#333", backgroundOpacity: 0.6,
                                    backgroundColor: "white"}, {model: model, ...centre});
    }
    return model;
  });
  viewer.zoomTo();
  viewer.render();
  return {viewer: viewer, models: models};
}
for (const query of document.querySelectorAll(".query")) {
  const entries = JSON.parse(query.querySelector("script.entries").textContent);
  const shown = draw(query.querySelector(".viewer"), entries);
  for (const box of query.querySelectorAll("input[data-index]")) {
    box.addEventListener("change", function () {
      const model = shown.models[Number(box.dataset.index)];
      if (box.checked) { model.show(); } else { model.hide(); }
      shown.viewer.render();
    });
  }
}
document.body.dataset.rendered = "yes";
"""


def _cell(value: float | str) -> str:
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def _query_html(index: int, query: ReportQuery) -> str:
    entries = list(query.entries)
    shades = _shades([e.rank for e in entries])
    names = sorted({k for e in entries for k in e.columns})
    head = "".join(f"<th>{html.escape(k)}</th>" for k in names)
    rows = []
    for i, (e, t) in enumerate(zip(entries, shades, strict=True)):
        swatch = "#9a9a9a" if e.rank == 0 else None
        cells = "".join(f"<td>{_cell(e.columns.get(k, ''))}</td>" for k in names)
        box = f'<input type="checkbox" checked data-index="{i}">'
        rows.append(
            f"<tr><td>{box}</td><td>{'query' if e.rank == 0 else e.rank}</td>"
            f'<td class="label"><span class="swatch" data-rank="{e.rank}"'
            f' style="background:{swatch or _ramp(t)}"></span> {html.escape(e.label)}</td>'
            f"<td>{e.distance:.4f}</td>{cells}</tr>"
        )
    data = json.dumps(
        [
            {
                "label": e.label,
                "model": e.model,
                "fmt": e.fmt,
                "rank": e.rank,
                "shade": t,
                "centre": [e.centre[0], int(e.centre[1])],
            }
            for e, t in zip(entries, shades, strict=True)
        ]  # fmt: skip
    ).replace("</", "<\\/")  # never close the script element from inside the data
    return (
        f'<h2>{html.escape(query.label)}</h2><div class="query" id="query-{index}">'
        f'<div class="viewer"></div><table><thead><tr><th>show</th><th>rank</th>'
        f'<th class="label">residue</th><th>distance</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<script type="application/json" class="entries">{data}</script></div>'
    )


_VIRIDIS = [
    "#440154", "#482878", "#3e4989", "#31688e", "#26828e",
    "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
]  # fmt: skip


def _shades(ranks: Sequence[int]) -> list[float]:
    """Position of each hit on the colour ramp, 0 (best shown hit) to 1 (worst), by rank order
    among the hits shown (ranks may have gaps where a hit's structure was not found); 0 for the
    query (rank 0)."""
    order = sorted(r for r in ranks if r)
    last = max(len(order) - 1, 1)
    return [order.index(r) / last if r else 0.0 for r in ranks]


def _ramp(t: float) -> str:
    return _VIRIDIS[round(t * (len(_VIRIDIS) - 1))]


def html_report(queries: Sequence[ReportQuery], title: str = "holoprot search") -> str:
    """The whole page as a string (about 0.6 MB of viewer code plus the structures)."""
    body = "".join(_query_html(i, q) for i, q in enumerate(queries))
    viewer = VIEWER_JS.read_text(encoding="utf-8").replace("</script", "<\\/script")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>"
        "<p>Hits superposed on each query by the model's learned frames "
        "(R = F<sub>query</sub><sup>T</sup> F<sub>hit</sub>, centred on the query's C&alpha;). "
        "Drag to rotate, scroll to zoom; the checkboxes show or hide a hit.</p>"
        f"{body}<script>{viewer}</script>"
        f"<script>const VIRIDIS = {json.dumps(_VIRIDIS)};{_SCRIPT}</script></body></html>\n"
    )


def write_report(
    path: str | os.PathLike, queries: Sequence[ReportQuery], title: str = "holoprot search"
) -> Path:
    """Write `html_report(queries)` to `path` atomically; return the path."""
    write_text_atomic(path, html_report(queries, title))
    return Path(path)
