"""`holoprot index` and `holoprot search`: build an index over embeddings, query it."""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from holoprot.cli._common import app, fail, overwrite_option
from holoprot.cli._common import stderr as console
from holoprot.errors import HoloprotError


@app.command("index")
def index(
    embeddings: Annotated[
        list[Path], typer.Argument(help="Embedding Parquet files or folders (`holoprot embed`).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Index folder to write.")],
    method: Annotated[
        str, typer.Option(help="auto (exact below 50,000 residues, else HNSW), exact or hnsw.")
    ] = "auto",
    overwrite: overwrite_option("an existing index in OUTPUT") = False,
) -> None:
    """Build a nearest-neighbour index over the latents of embedding files."""
    from holoprot.search.index import Index

    try:
        if (output / "index.json").exists() and not overwrite:
            raise HoloprotError(f"{output}: already holds an index, kept (pass --overwrite)")
        built = Index.build(embeddings, method=method)  # type: ignore[arg-type]
        built.save(output)
    except HoloprotError as exc:
        fail(str(exc))
    console.print(
        f"indexed {len(built)} residues ({built.method}, cosine distance, weights"
        f" {built.weights_name}) in {output}",
        highlight=False,
        soft_wrap=True,
        emoji=False,
        markup=False,
    )


@app.command("search")
def search(
    queries: Annotated[
        list[str],
        typer.Argument(
            help="FILE:CHAIN:RESNUM[ICODE], FILE:CHAIN or FILE; FILE a structure or an"
            " embeddings .parquet."
        ),
    ],
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder (`holoprot index`).")],
    k: Annotated[int, typer.Option("-k", min=1, help="Hits per query residue.")] = 10,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the hits to .csv or .parquet.")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Weights file to embed queries with (default: the index's, by name)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    exact: Annotated[
        bool, typer.Option("--exact", help="Brute-force search even on an HNSW index.")
    ] = False,
    superpose_dir: Annotated[
        Path | None,
        typer.Option(
            "--superpose",
            help="Write, in this new folder, per query residue Q: Q.cif (mmCIF; model 1 the"
            " query's environment, model K+1 the hit of rank K moved onto it with the learned"
            " frames, B-factor = rank), Q.pml (PyMOL) and Q.cxc (ChimeraX); Q is"
            " STRUCTURE_CHAIN_RESNUM[ICODE]. Adds rmsd_frame and rmsd_optimal (backbone, Å) to"
            " the hits. Needs an index of `holoprot embed --frames` output.",
        ),
    ] = None,
    refine: Annotated[
        bool,
        typer.Option(
            "--refine",
            help="With --superpose: apply the optimal backbone fit on top of the frames'.",
        ),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a self-contained HTML report (works offline): per query residue the hits"
            " table and a 3D view of its environment with the hits superposed by the learned"
            " frames (3Dmol.js inside). Needs an index of `holoprot embed --frames` output.",
        ),
    ] = None,
    overwrite: overwrite_option("an existing OUTPUT file or --superpose folder") = False,
) -> None:
    """Find the indexed residues whose environments are nearest to each query residue's."""
    import pyarrow as pa

    from holoprot.cli._checks import check_output_file
    from holoprot.search.embeddings import latent_matrix
    from holoprot.search.index import Index
    from holoprot.search.queries import query_table

    try:
        if output is not None:
            if output.suffix.lower() not in (".csv", ".parquet"):
                raise HoloprotError(f"{output}: output must end in .csv or .parquet")
            check_output_file(output, overwrite=overwrite, resume=False, resumable=False)
        if refine and superpose_dir is None and html is None:
            raise HoloprotError("--refine needs --superpose or --html")
        if superpose_dir is not None:
            _check_superpose_dir(superpose_dir, overwrite)
        if html is not None:
            if html.suffix.lower() not in (".html", ".htm"):
                raise HoloprotError(f"{html}: the report must end in .html")
            check_output_file(html, overwrite=overwrite, resume=False, resumable=False)
        superposed = superpose_dir is not None or html is not None
        idx = Index.load(index_dir)
        if superposed and idx.frames is None:
            raise HoloprotError(
                f"{index_dir}: the index holds no frames, so hits cannot be superposed; rebuild"
                " it from `holoprot embed --frames` output"
            )
        with_frames = superposed
        table = query_table(
            queries,
            idx.weights_name,
            idx.weights_sha256,
            weights=weights,
            device=device,
            frames=with_frames,
        )
        distances, rows = idx.search_vectors(latent_matrix(table.column("latent")), k, exact=exact)
        hits = idx.hits_table(table, distances, rows)
        if superposed:
            files, rmsds, views = _superpose(idx, table, rows, refine)
            hits = hits.append_column("rmsd_frame", pa.array(rmsds[0], pa.float32()))
            hits = hits.append_column("rmsd_optimal", pa.array(rmsds[1], pa.float32()))
            if superpose_dir is not None:
                _write_folder(superpose_dir, files)
            if html is not None:
                _write_report(html, views, distances)
    except HoloprotError as exc:
        fail(str(exc))
    if superpose_dir is not None:
        console.print(
            f"wrote {len(files)} superposition files of {table.num_rows} query residues to"
            f" {superpose_dir}",
            highlight=False,
            soft_wrap=True,
            emoji=False,
            markup=False,
        )
    if html is not None:
        console.print(
            f"wrote the report of {table.num_rows} query residues to {html}",
            highlight=False,
            soft_wrap=True,
            emoji=False,
            markup=False,
        )
    if output is None:
        _print_hits(hits)
        return
    _write_hits(hits, output)
    console.print(
        f"wrote {hits.num_rows} hits of {table.num_rows} query residues to {output}",
        highlight=False,
        soft_wrap=True,
        emoji=False,
        markup=False,
    )


def _write_hits(hits, output: Path) -> None:  # pyarrow.Table
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from holoprot._util.atomic import atomic_path

    with atomic_path(output, suffix=output.suffix) as tmp:
        if output.suffix.lower() == ".csv":
            pcsv.write_csv(hits, tmp)
        else:
            pq.write_table(hits, tmp)


def _check_superpose_dir(folder: Path, overwrite: bool) -> None:
    if not folder.parent.is_dir():
        raise HoloprotError(f"{folder.parent}: output folder does not exist")
    if os.path.lexists(folder):
        if not folder.is_dir() or folder.is_symlink():
            raise HoloprotError(f"{folder}: exists and is not a folder")
        if any(folder.iterdir()) and not overwrite:
            raise HoloprotError(f"{folder}: already exists, kept (pass --overwrite to replace it)")


def _file_stem(structure_id: str, chain: str, number: int, icode: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{structure_id}_{chain}_{number}{icode}").lstrip(".")
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def _superpose(idx, table, rows, refine: bool):  # Index, pyarrow.Table, (m, k) int64
    """Superpose every query's hits: ({file name: writer}, (rmsd_frame, rmsd_optimal) lists)."""
    from holoprot.search.embeddings import frame_matrix
    from holoprot.search.superpose import Site, Skipped, superpose, write_mmcif, write_scripts

    q = table.to_pydict()
    q_frames = frame_matrix("query", table.column("frame"))
    h = idx.rows.to_pydict()
    cache: dict = {}
    files: dict[str, object] = {}
    taken: set[str] = set()
    rmsd_frame: list[float | None] = []
    rmsd_optimal: list[float | None] = []
    views: list[tuple] = []  # (label, query Site, its Environment, [(rank, Superposition)])
    for i, hit_rows in enumerate(rows):
        query = Site(
            q["source_path"][i],
            q["chain"][i],
            q["residue_number"][i],
            q["insertion_code"][i],
            q["model"][i],
            q_frames[i],
        )
        sites = [
            Site(
                h["source_path"][j],
                h["chain"][j],
                h["residue_number"][j],
                h["insertion_code"][j],
                h["model"][j],
                idx.frames[j],
            )
            for j in hit_rows.tolist()
        ]
        env, results = superpose(query, sites, refine=refine, cache=cache)
        placed = []
        for rank, result in enumerate(results, start=1):
            if isinstance(result, Skipped):
                console.print(
                    f"warning: hit {rank} of {query.label()} skipped: {result.reason}",
                    highlight=False,
                    soft_wrap=True,
                    emoji=False,
                    markup=False,
                )
                rmsd_frame.append(None)
                rmsd_optimal.append(None)
            else:
                placed.append((rank, result))
                rmsd_frame.append(result.rmsd_frame)
                rmsd_optimal.append(result.rmsd_optimal)
        stem = _file_stem(
            q["structure_id"][i], query.chain, query.residue_number, query.insertion_code, taken
        )
        name = f"{q['structure_id'][i]}:{query.chain}:{query.residue_number}{query.insertion_code}"
        views.append((f"{name} {q['residue_name'][i]}", query, env, placed))
        files[f"{stem}.cif"] = partial(write_mmcif, query=env, results=placed, name=stem)
        files[f"{stem}.pml"] = partial(
            write_scripts, cif_name=f"{stem}.cif", results=placed, which="pml"
        )
        files[f"{stem}.cxc"] = partial(
            write_scripts, cif_name=f"{stem}.cif", results=placed, which="cxc"
        )
    return files, (rmsd_frame, rmsd_optimal), views


def _write_report(path: Path, views: list, distances) -> None:  # (m, k) float32
    """The HTML report: per query residue its environment and its placed hits."""
    from holoprot.io.structure import structure_id
    from holoprot.search.report import ReportEntry, ReportQuery, write_report
    from holoprot.search.superpose import environment_text

    queries = []
    for i, (label, query, env, placed) in enumerate(views):
        text, fmt = environment_text(env)
        entries = [ReportEntry(label, text, (query.chain, query.residue_number), fmt=fmt)]
        for rank, r in placed:
            site = r.site
            text, fmt = environment_text(r.environment)
            entries.append(
                ReportEntry(
                    f"{structure_id(site.path)}:{site.chain}:{site.residue_number}"
                    f"{site.insertion_code}",
                    text,
                    (site.chain, int(site.residue_number)),
                    rank=rank,
                    distance=float(distances[i][rank - 1]),
                    fmt=fmt,
                    columns={"rmsd_frame": r.rmsd_frame, "rmsd_optimal": r.rmsd_optimal},
                )
            )
        queries.append(ReportQuery(label, entries))
    write_report(path, queries)


def _write_folder(folder: Path, files: dict) -> None:
    """Write every file in a temporary folder beside `folder`, then rename it into place (an
    existing `folder` may be replaced: `--overwrite` was checked before)."""
    from holoprot._util.atomic import atomic_folder

    try:
        with atomic_folder(folder) as tmp:
            for name, write in files.items():
                write(tmp / name)
    except OSError as exc:
        raise HoloprotError(f"{folder}: cannot write it ({exc.strerror or exc})") from None


def _print_hits(hits) -> None:  # pyarrow.Table
    out = Console(emoji=False, markup=False, highlight=False)
    table = Table(show_lines=False)
    rmsd = "rmsd_frame" in hits.column_names
    columns = [
        ("query", "query"),
        ("query residue", None),
        ("rank", "rank"),
        ("distance", "distance"),
        ("structure", "structure_id"),
        ("hit residue", None),
    ]
    if rmsd:
        columns += [("rmsd frame (Å)", "rmsd_frame"), ("rmsd optimal (Å)", "rmsd_optimal")]
    for title, _ in columns:
        justify = (
            "left" if title in ("query", "query residue", "structure", "hit residue") else "right"
        )
        table.add_column(title, justify=justify, overflow="fold")
    data = hits.to_pydict()

    def residue(prefix: str, i: int) -> str:
        return (
            f"{data[prefix + 'chain'][i]}:{data[prefix + 'residue_name'][i]}"
            f"{data[prefix + 'residue_number'][i]}{data[prefix + 'insertion_code'][i]}"
        )

    def number(value: float | None) -> str:
        return "skipped" if value is None else f"{value:.2f}"

    for i in range(hits.num_rows):
        cells = [
            data["query"][i] if data["rank"][i] == 1 else "",
            residue("query_", i),
            str(data["rank"][i]),
            f"{data['distance'][i]:.4f}",
            data["structure_id"][i],
            residue("", i),
        ]
        if rmsd:
            cells += [number(data["rmsd_frame"][i]), number(data["rmsd_optimal"][i])]
        table.add_row(*cells)
    out.print(table)
