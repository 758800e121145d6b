"""`holoprot index` and `holoprot search`: build an index over embeddings, query it."""

from __future__ import annotations

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
    overwrite: overwrite_option("an existing OUTPUT file") = False,
) -> None:
    """Find the indexed residues whose environments are nearest to each query residue's."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from holoprot.cli._checks import check_output_file
    from holoprot.search.index import Index
    from holoprot.search.queries import query_table

    try:
        if output is not None:
            if output.suffix.lower() not in (".csv", ".parquet"):
                raise HoloprotError(f"{output}: output must end in .csv or .parquet")
            check_output_file(output, overwrite=overwrite, resume=False, resumable=False)
        idx = Index.load(index_dir)
        table = query_table(
            queries, idx.weights_name, idx.weights_sha256, weights=weights, device=device
        )
        hits = idx.search(table, k, exact=exact)
    except HoloprotError as exc:
        fail(str(exc))
    if output is None:
        _print_hits(hits)
        return
    if output.suffix.lower() == ".csv":
        pcsv.write_csv(hits, output)
    else:
        pq.write_table(hits, output)
    console.print(
        f"wrote {hits.num_rows} hits of {table.num_rows} query residues to {output}",
        highlight=False,
        soft_wrap=True,
        emoji=False,
        markup=False,
    )


def _print_hits(hits) -> None:  # pyarrow.Table
    out = Console(emoji=False, markup=False, highlight=False)
    table = Table(show_lines=False)
    columns = [
        ("query", "query"),
        ("query residue", None),
        ("rank", "rank"),
        ("distance", "distance"),
        ("structure", "structure_id"),
        ("hit residue", None),
    ]
    for title, _ in columns:
        justify = "right" if title in ("rank", "distance") else "left"
        table.add_column(title, justify=justify, overflow="fold")
    data = hits.to_pydict()

    def residue(prefix: str, i: int) -> str:
        return (
            f"{data[prefix + 'chain'][i]}:{data[prefix + 'residue_name'][i]}"
            f"{data[prefix + 'residue_number'][i]}{data[prefix + 'insertion_code'][i]}"
        )

    for i in range(hits.num_rows):
        table.add_row(
            data["query"][i] if data["rank"][i] == 1 else "",
            residue("query_", i),
            str(data["rank"][i]),
            f"{data['distance'][i]:.4f}",
            data["structure_id"][i],
            residue("", i),
        )
    out.print(table)
