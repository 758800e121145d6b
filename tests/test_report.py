"""The HTML report of search hits renders in a real browser (issue #23): headless Chromium
(Debian's package; `make test` installs it) opens it from a file:// URL with no network, the
page's script runs without an error, and the 3D view is not blank (it holds the hits' colours)."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from holoprot.search.report import ReportEntry, ReportQuery, html_report, write_report

EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"


def _environment(chain: str, number: int, shift: float) -> str:
    """PDB text of the atoms within 10 Å of 1hvr's residue CHAIN:NUMBER Cα, centred there and
    shifted by `shift` Å along x (a stand-in for a superposed hit)."""
    st = gemmi.read_structure(str(EXAMPLES / "1hvr.pdb"))
    centre = st[0][chain][str(number)][0]["CA"][0].pos
    out = gemmi.Structure()
    out.add_model(gemmi.Model("1"))
    for ch in st[0]:
        kept = gemmi.Chain(ch.name)
        for res in ch:
            if any(a.pos.dist(centre) <= 10 for a in res):
                copy = res.clone()
                for atom in copy:
                    p = atom.pos - centre
                    atom.pos = gemmi.Position(p.x + shift, p.y, p.z)
                kept.add_residue(copy)
        if len(kept):
            out[0].add_chain(kept)
    return out.make_pdb_string()


def _query(ranks: tuple[int, ...] = (1, 2, 3)) -> ReportQuery:
    entries = [ReportEntry("1hvr:A:25 ASP", _environment("A", 25, 0.0), ("A", 25))]
    for rank in ranks:
        entries.append(
            ReportEntry(
                f"1hvr:B:{24 + rank}",
                _environment("A", 25, 0.4 * rank),
                ("A", 25),
                rank=rank,
                distance=0.01 * rank,
                columns={"rmsd_frame": 0.4 * rank, "rmsd_optimal": 0.0},
            )
        )
    return ReportQuery("1hvr:A:25", entries)


def test_page_is_self_contained() -> None:
    page = html_report([_query()])
    assert "$3Dmol" in page and "<script src" not in page and "http" not in page.split("<body")[0]
    assert page.count('class="query"') == 1 and page.count("data-index=") == 4
    assert "</script" not in page.split("<script>", 1)[1].split("</script>")[0]  # viewer intact


def test_hits_with_rank_gaps_span_the_colour_ramp() -> None:
    """A hit whose structure file was not found is left out of the report, so the shown ranks can
    have gaps (here 1, 3, 7): the page is still made and the shown hits span the whole ramp, best
    dark, worst light (it raised IndexError before)."""
    page = html_report([_query((1, 3, 7))])
    swatches = [part.split('"')[0] for part in page.split('style="background:')[1:]]
    assert swatches == ["#9a9a9a", "#440154", "#26828e", "#fde725"]


def test_report_renders_in_headless_chromium(render_page, tmp_path: Path) -> None:
    body, rgb = render_page(write_report(tmp_path / "report.html", [_query()]))
    assert 'data-rendered="yes"' in body and 'data-errors=""' in body, body
    # Hits are drawn in viridis colours; text, the query (grey) and the page are greyscale but
    # for the table's colour swatches: 0.11 % of the pixels with the hits drawn grey, 1.2 %
    # with the hits drawn (1200 x 800 window).
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    assert (chroma > 0.15).mean() > 0.005, "the 3D view is blank"
    assert np.ptp(rgb) > 0.5
