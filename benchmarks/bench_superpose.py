"""Superposing search hits by the learned frames: backbone RMSDs and the cost of the outputs.

Issue #23. The first ``--files`` (default 40) ``*_u.pdb`` structures of ``--structures``
(default data/structures-matched, sorted by name) are embedded with their frames
(``holoprot embed FILES --frames``, one run for the query files, one for the database files);
every ``--query-every``-th file (default every 5th) is a query file, the rest the database,
indexed exactly (`Index.build(method="exact")` on the database Parquet only).

* RMSDs: ``--queries`` (default 300) residues drawn (seeded) from the query files' rows are
  searched (k = 10); for the top hit, the backbone RMSD (Å; N, CA, C, O of residues i−2 … i+2,
  else of the centre residue) after the frame superposition (``rmsd_frame``), after the optimal
  Kabsch fit of the same atoms (``rmsd_optimal``) and after a random rotation about the Cα
  (hit Cα on query Cα, seeded; the baseline of tests/test_superpose.py). Median and 90th
  percentile overall and per DSSP 3-state class of the query residue (helix H, G, I; strand
  E, B; coil the rest; ``mkdssp`` on the query file).
* Outputs: wall seconds of ``holoprot search Q1 … Q10 --index DIR -k 10 --superpose OUT --html
  OUT.html`` (the first 10 drawn residues as ``FILE:CHAIN:RESNUM[ICODE]`` queries, so the
  command also reads and embeds their files, loads the model and the index: nothing excluded),
  the folder's and the report's size; beside it the same search without --superpose/--html.
  Each command is run ``--repeats`` times (default 3).

    OMP_NUM_THREADS=1 python benchmarks/bench_superpose.py [--files 40] [--query-every 5] \
        [--queries 300] [--seed 0] [--structures data/structures-matched] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_CORPUS, cpu_model, row  # noqa: E402

from holoprot.evaluation.dssp import dssp_states, dssp_version, three_state  # noqa: E402
from holoprot.io.structure import read_structure  # noqa: E402
from holoprot.search import Index  # noqa: E402
from holoprot.search.embeddings import read_embeddings  # noqa: E402
from holoprot.search.superpose import (  # noqa: E402
    Site,
    Skipped,
    _pairs,
    _read,
    rmsd,
    superpose,
)

HOLOPROT = str(Path(sys.executable).with_name("holoprot"))
CLASSES = (("helix", "H"), ("strand", "E"), ("coil", "C"))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation (3, 3)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def embed(files: list[str], output: Path) -> float:
    """``holoprot embed FILES --frames -o OUTPUT``; wall seconds."""
    start = time.perf_counter()
    subprocess.run(
        [HOLOPROT, "embed", *files, "--frames", "-o", str(output)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def site(identity: dict, frames: np.ndarray, i: int) -> Site:
    return Site(
        identity["source_path"][i],
        identity["chain"][i],
        identity["residue_number"][i],
        identity["insertion_code"][i],
        identity["model"][i],
        frames[i],
    )


def secondary_structure(paths: set[str]) -> dict[tuple[str, str, int, str], str]:
    """{(path, chain, number, icode): DSSP 3-state} for every labelled residue of the files."""
    labels = {}
    for path in sorted(paths):
        st = read_structure(path)
        states = three_state(dssp_states(st))
        for r, state in enumerate(states.tolist()):
            if state:
                key = (path, str(st.chain[r]), int(st.seq_num[r]), str(st.icode[r]))
                labels[key] = state
    return labels


def summary(name: str, values: dict[str, list[float]], keep: np.ndarray) -> str:
    cells = [name, int(keep.sum())]
    for key in ("frame", "optimal", "random"):
        x = np.asarray(values[key])[keep]
        if len(x):
            cells += [f"{np.median(x):.2f}", f"{np.percentile(x, 90):.2f}"]
        else:
            cells += ["-", "-"]
    return row(*cells)


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--files", type=int, default=40, help="first N *_u.pdb files (0 = all)")
    ap.add_argument("--query-every", type=int, default=5, help="every n-th file is a query file")
    ap.add_argument("--queries", type=int, default=300, help="query residues for the RMSDs")
    ap.add_argument("--cli-queries", type=int, default=10, help="query residues for the CLI")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each CLI command timed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: temp)")
    args = ap.parse_args()

    files = sorted(str(p.resolve()) for p in args.structures.glob("*_u.pdb"))
    files = files[: args.files] if args.files > 0 else files
    query_files = files[:: args.query_every]
    db_files = [f for f in files if f not in set(query_files)]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep
    else:
        work = Path(tempfile.mkdtemp(prefix="holoprot-bench-superpose-"))
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; {dssp_version()}")
    print(f"{len(files)} files: {len(query_files)} query, {len(db_files)} database; work {work}")

    # ---- embed, index ---------------------------------------------------------------------------
    q_parquet, db_parquet, index_dir = work / "queries.parquet", work / "db.parquet", work / "index"
    t_q = embed(query_files, q_parquet)
    t_db = embed(db_files, db_parquet)
    start = time.perf_counter()
    index = Index.build(db_parquet, method="exact")
    index.save(index_dir)
    t_index = time.perf_counter() - start
    queries = read_embeddings(q_parquet)
    print(
        f"embedded {len(queries)} query rows in {t_q:.1f} s, {len(index)} database rows in"
        f" {t_db:.1f} s; exact index built and saved in {t_index:.1f} s"
    )

    # ---- RMSDs of the top hit -------------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(queries), min(args.queries, len(queries)), replace=False)
    q_id = queries.identity.to_pydict()
    h_id = index.rows.to_pydict()
    start = time.perf_counter()
    _, rows = index.search_vectors(queries.latent[chosen], args.k)
    labels = secondary_structure({q_id["source_path"][int(i)] for i in chosen})
    values: dict[str, list[float]] = {"frame": [], "optimal": [], "random": []}
    states: list[str] = []
    skipped = 0
    cache: dict = {}
    for qi, hit_rows in zip(chosen.tolist(), rows, strict=True):
        query = site(q_id, queries.frame, qi)
        _, (result,) = superpose(query, [site(h_id, index.frames, int(hit_rows[0]))], cache=cache)
        if isinstance(result, Skipped):
            skipped += 1
            continue
        q, h = _read(query, cache), _read(result.site, cache)
        qr, hr = q.residue(query), h.residue(result.site)
        target, mobile = _pairs(q.backbone(qr), h.backbone(hr))
        turned = (mobile - h.ca(hr)) @ random_rotation(rng).T + q.ca(qr)
        values["frame"].append(result.rmsd_frame)
        values["optimal"].append(result.rmsd_optimal)
        values["random"].append(rmsd(turned, target))
        key = (query.path, query.chain, int(query.residue_number), query.insertion_code)
        states.append(labels.get(key, "-"))
    t_rmsd = time.perf_counter() - start
    state = np.asarray(states)
    print(
        f"\n{len(chosen)} query residues, top hit of k = {args.k}: {len(states)} superposed,"
        f" {skipped} skipped, {int((state == '-').sum())} without a DSSP label;"
        f" search + DSSP + superposition {t_rmsd:.1f} s\n"
    )
    print("Backbone RMSD (Å) of the top hit, median / 90th percentile:\n")
    print(
        row(
            "query residues",
            "n",
            "frame median",
            "frame p90",
            "optimal median",
            "optimal p90",
            "random rotation median",
            "random rotation p90",
        )
    )
    print(row(*["---"] * 8))
    print(summary("all", values, np.ones(len(state), bool)))
    for name, code in CLASSES:
        print(summary(name, values, state == code))
    f, o = np.asarray(values["frame"]), np.asarray(values["optimal"])
    print(
        f"\nframe ≤ 2 × optimal: {np.mean(f <= 2 * o):.2f}; frame ≤ 2 Å: {np.mean(f <= 2):.2f};"
        f" optimal ≤ 2 Å: {np.mean(o <= 2):.2f}; optimal < 0.1 Å (a near copy):"
        f" {np.mean(o < 0.1):.2f}"
    )

    # ---- the CLI's outputs ----------------------------------------------------------------------
    cli = []
    for qi in chosen[: args.cli_queries].tolist():
        cli.append(
            f"{q_id['source_path'][qi]}:{q_id['chain'][qi]}:"
            f"{q_id['residue_number'][qi]}{q_id['insertion_code'][qi]}"
        )
    out_dir, html = work / "superposed", work / "report.html"
    plain = [HOLOPROT, "search", *cli, "--index", str(index_dir), "-k", str(args.k)]
    outputs = [*plain, "--superpose", str(out_dir), "--html", str(html), "--overwrite"]
    n_query_files = len({q.rsplit(":", 2)[0] for q in cli})
    print(
        f"\n`holoprot search` of {len(cli)} residues ({n_query_files} structure files) ×"
        f" {args.k} hits, wall s of {args.repeats} runs (median, min–max):\n"
    )
    print(row("command", "queries × hits", "wall median", "wall min–max", "folder", "report"))
    print(row(*["---"] * 6))
    for name, command in (("search only", plain), ("--superpose DIR --html FILE", outputs)):
        walls = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"{' '.join(command)} failed:\n{run.stderr}")
            walls.append(time.perf_counter() - start)
        sizes = ["-", "-"]
        if command is outputs:
            n_files, size = folder_size(out_dir)
            sizes = [f"{n_files} files, {size / 1e6:.2f} MB", f"{html.stat().st_size / 1e6:.2f} MB"]
        print(
            row(
                name,
                f"{len(cli)} × {args.k}",
                f"{np.median(walls):.1f} s",
                f"{min(walls):.1f}–{max(walls):.1f} s",
                *sizes,
            )
        )
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
