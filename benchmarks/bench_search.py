"""Microenvironment search: ANN libraries compared, holoprot.Index speed, size, memory, quality.

Inputs: an embeddings Parquet of BM5 made once by
``holoprot embed data/structures-matched -o runs/bm5-embeddings.parquet`` (``--embeddings``;
a folder of part files is read too), and the structure files themselves for the l = 0 baseline.

Sections (each optional):

* ``libraries``: on ``--compare-rows`` synthetic rows (below), build time and queries/s at k = 10
  against recall@10 for exact NumPy/BLAS search, usearch HNSW, hnswlib HNSW, FAISS HNSW-Flat and
  FAISS IVF-Flat, at a few search-time settings each. usearch and hnswlib are not holoprot
  dependencies: pass ``--extra-path`` where they are installed (skipped when absent).
* ``real``: `holoprot.Index` (HNSW, and exact) over all BM5 latents: build time, size on disk,
  queries/s at k = 10 for held-out noisy queries (below), recall@10 against exact search, peak RSS.
* ``synthetic``: the same over ``--synthetic-rows`` (default 10^6) rows: real latents drawn with
  replacement plus Gaussian noise of 0.1 × each dimension's standard deviation; queries are
  other real latents plus the same noise.
* ``quality``: complexes (BM5 ids' first four characters) of 10 % of the structures are held out;
  their residues query the others' and the figure is the fraction of the 10 hits with the
  query's residue type, for the latent (cosine and Euclidean distance) and, on the first
  ``--l0-structures`` files only (their Zernike projection is computed here), for the input's
  l = 0 Zernike coefficients (44 = 11 radial orders × 4 element channels, both distances) beside
  the latent on the same subset.

Timing: wall clock (`time.perf_counter`) and process CPU time (`time.process_time`). On a shared
machine the wall figure is a lower bound; queries per CPU-second × cores estimates an idle
machine's rate. One untimed warm-up query batch precedes each timed one.

    python benchmarks/bench_search.py --embeddings runs/bm5-embeddings.parquet \
        --structures data/structures-matched [--sections libraries real synthetic quality]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import row  # noqa: E402

from holoprot.search import Index  # noqa: E402
from holoprot.search.embeddings import Embeddings, read_embeddings  # noqa: E402
from holoprot.search.exact import exact_search, normalise  # noqa: E402


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(truth, found, strict=True)])
    )


def timed(fn, *args):
    """(result, wall s, CPU s) of fn(*args)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def noisy(x: np.ndarray, n: int, rng: np.random.Generator, scale: float = 0.1) -> np.ndarray:
    sd = x.std(0)
    picks = x[rng.integers(0, len(x), n)]
    return (picks + rng.normal(0, 1, picks.shape).astype(np.float32) * sd * scale).astype(
        np.float32
    )


def split(emb: Embeddings, rng: np.random.Generator, n_queries: int):
    """Row numbers of database and held-out query residues (held out by complex)."""
    ids = np.asarray(emb.identity.column("structure_id").to_pylist())
    complexes = np.char.upper(np.asarray([s[:4] for s in ids]))
    unique = np.unique(complexes)
    held = rng.choice(unique, max(1, len(unique) // 10), replace=False)
    is_query = np.isin(complexes, held)
    queries = np.flatnonzero(is_query)
    queries = rng.choice(queries, min(n_queries, len(queries)), replace=False)
    return np.flatnonzero(~is_query), queries


def bench_index(name: str, emb: Embeddings, queries: np.ndarray, threads: int, k: int = 10):
    """Build HNSW, save, load, time queries, compare with exact; print rows."""
    index, build_wall, build_cpu = timed(lambda: Index.build(emb, method="hnsw", threads=threads))
    with tempfile.TemporaryDirectory() as tmp:
        folder = index.save(Path(tmp) / "idx")
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        loaded, load_wall, _ = timed(Index.load, folder)
    loaded.search_vectors(queries[:100], k)
    (_, found), q_wall, q_cpu = timed(loaded.search_vectors, queries, k)
    exact_vectors = normalise(emb.latent)
    (_, truth), e_wall, e_cpu = timed(exact_search, exact_vectors, normalise(queries), k)
    cpus = len(os.sched_getaffinity(0))
    n = len(queries)
    print(
        row(
            name,
            f"{len(emb):,}",
            f"{build_wall:.0f} s wall / {build_cpu:.0f} CPU-s",
            f"{size:.0f} MiB",
            f"{load_wall:.1f} s",
            f"{n / q_wall:,.0f} (wall) / {cpus * n / q_cpu:,.0f} (CPU-time × {cpus})",
            f"{recall(truth, found):.3f}",
            f"{n / e_wall:,.0f} / {cpus * n / e_cpu:,.0f}",
            f"{peak_rss_mb():,.0f} MiB",
        ),
        flush=True,
    )


def section_libraries(x: np.ndarray, rows: int, n_queries: int, threads: int) -> None:
    rng = np.random.default_rng(0)
    base = normalise(noisy(x, rows, rng))
    q = normalise(noisy(x, n_queries, rng))
    cpus = threads
    (_, truth), w, c = timed(exact_search, base, q, 10)
    print(
        row(
            "exact NumPy/BLAS",
            "-",
            "0",
            f"{n_queries / w:,.0f} / {cpus * n_queries / c:,.0f}",
            "1.000",
        ),
        flush=True,
    )

    def measure(label: str, build, settings, search) -> None:
        built, bw, bc = timed(build)
        for s in settings:
            search(built, q[:100], s)
            found, sw, sc = timed(search, built, q, s)
            print(
                row(
                    label,
                    s,
                    f"{bw:.0f} s / {bc:.0f} CPU-s",
                    f"{n_queries / sw:,.0f} / {cpus * n_queries / sc:,.0f}",
                    f"{recall(truth, found):.3f}",
                ),
                flush=True,
            )

    try:
        from usearch.index import Index as UIndex
    except ImportError:
        UIndex = None

    def u_build():
        u = UIndex(ndim=base.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128)
        u.add(np.arange(rows), base, threads=threads)
        return u

    def u_search(u, qq, ef):
        u.expansion_search = ef
        return u.search(qq, 10, threads=threads).keys

    if UIndex is not None:
        measure("usearch HNSW M=16 efC=128, ef=", u_build, (16, 32, 64, 128), u_search)
    try:
        import hnswlib
    except ImportError:
        hnswlib = None
    if hnswlib is not None:

        def h_build():
            h = hnswlib.Index("ip", base.shape[1])
            h.init_index(rows, M=16, ef_construction=128)
            h.set_num_threads(threads)
            h.add_items(base)
            return h

        def h_search(h, qq, ef):
            h.set_ef(ef)
            return h.knn_query(qq, 10)[0]

        measure("hnswlib HNSW M=16 efC=128, ef=", h_build, (16, 32, 64, 128), h_search)
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        faiss.omp_set_num_threads(threads)

        def f_build():
            f = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
            f.hnsw.efConstruction = 128
            f.add(base)
            return f

        def f_search(f, qq, ef):
            f.hnsw.efSearch = ef
            return f.search(qq, 10)[1]

        measure("FAISS HNSW-Flat M=16 efC=128, ef=", f_build, (16, 32, 64, 128), f_search)
        nlist = int(4 * np.sqrt(rows))

        def i_build():
            quantiser = faiss.IndexFlatIP(base.shape[1])
            ivf = faiss.IndexIVFFlat(quantiser, base.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(base[rng.choice(rows, min(rows, 40 * nlist), replace=False)])
            ivf.add(base)
            return ivf, quantiser  # the quantiser must outlive the IVF index

        def i_search(built, qq, nprobe):
            built[0].nprobe = nprobe
            return built[0].search(qq, 10)[1]

        measure(f"FAISS IVF-Flat nlist={nlist}, nprobe=", i_build, (4, 8, 16, 32), i_search)


def same_type_fraction(db: np.ndarray, q: np.ndarray, names_db, names_q, metric: str) -> float:
    if metric == "cosine":
        _, hits = exact_search(normalise(db), normalise(q), 10)
    else:
        hits = np.empty((len(q), 10), np.int64)
        sq = (db**2).sum(1)
        for s in range(0, len(q), 256):
            d = sq[None] - 2 * q[s : s + 256] @ db.T
            hits[s : s + 256] = np.argpartition(d, 10, axis=1)[:, :10]
    return float((names_db[hits] == names_q[:, None]).mean())


def identity_keys(table) -> list[tuple]:
    """(structure_id, chain, residue_number, insertion_code) of every row of an identity table."""
    t = table.to_pydict()
    columns = ("structure_id", "chain", "residue_number", "insertion_code")
    return list(zip(*(t[c] for c in columns), strict=True))


def chance_agreement(names_db: np.ndarray, names_q: np.ndarray) -> float:
    """Probability that a random database residue has a random query residue's type."""
    return sum(np.mean(names_db == r) * np.mean(names_q == r) for r in np.unique(names_db))


def print_type_rows(label: str, data: np.ndarray, inputs: str, db, q, names) -> None:
    """One table row per metric: fraction of same-type 10-NN, beside chance."""
    chance = chance_agreement(names[db], names[q])
    for metric in ("cosine", "euclidean"):
        f = same_type_fraction(data[db], data[q], names[db], names[q], metric)
        print(
            row(f"{label}, {metric}", inputs, f"{len(q)}", f"{f:.3f}", f"{chance:.3f}"), flush=True
        )


def l0_coefficients(paths: list[str]):
    """Identity (structure_id, chain, number, icode) keys and (n, 44) l = 0 coefficients."""
    from holoprot.zernike.pipeline import ProjectionSettings, project_file

    settings = ProjectionSettings()
    l0 = np.flatnonzero(settings.basis.layout()["l"] == 0)
    keys, coeffs = [], []
    for p in paths:
        f = project_file(p, settings)
        keys += identity_keys(f.identity)
        coeffs.append(f.coefficients[:, l0])
    return keys, np.concatenate(coeffs)


def section_quality(emb: Embeddings, structures: list[str], n_l0: int, n_queries: int) -> None:
    rng = np.random.default_rng(1)
    names = np.asarray(emb.identity.column("residue_name").to_pylist())
    db, q = split(emb, rng, n_queries)
    print_type_rows("latent", emb.latent, f"all {len(emb):,} residues", db, q, names)
    if n_l0 <= 0:
        return
    from holoprot.io.inputs import expand_inputs
    from holoprot.io.structure import structure_id

    present = set(emb.identity.column("structure_id").to_pylist())
    files = [str(p) for p in expand_inputs(structures) if structure_id(p) in present]
    files = [files[i] for i in sorted(rng.choice(len(files), min(n_l0, len(files)), False))]
    keys, coeffs = l0_coefficients(files)
    where = {k: i for i, k in enumerate(identity_keys(emb.identity))}
    rows_ = np.asarray([where.get(k, -1) for k in keys])
    keep = rows_ >= 0
    sub = Embeddings(emb.identity.take(rows_[keep]), emb.latent[rows_[keep]], "", "")
    sub_names = names[rows_[keep]]
    db, q = split(sub, rng, n_queries)
    inputs = f"{len(files)} files, {len(sub):,} residues"
    for label, data in (("latent", sub.latent), ("l = 0 coefficients (44)", coeffs[keep])):
        print_type_rows(label, data, inputs, db, q, sub_names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", nargs="+", default=["runs/bm5-embeddings.parquet"])
    ap.add_argument("--structures", nargs="+", default=["data/structures-matched"])
    ap.add_argument("--sections", nargs="+", default=["libraries", "real", "synthetic", "quality"])
    ap.add_argument("--compare-rows", type=int, default=200_000)
    ap.add_argument("--synthetic-rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--l0-structures", type=int, default=100)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--extra-path", default=None, help="Folder holding hnswlib/faiss.")
    args = ap.parse_args()
    if args.extra_path:
        sys.path.append(args.extra_path)
    emb = read_embeddings(args.embeddings)
    print(f"{len(emb):,} residues from {args.embeddings}, weights {emb.weights_name}", flush=True)
    rng = np.random.default_rng(0)
    if "libraries" in args.sections:
        print(
            f"\nlibraries, {args.compare_rows:,} synthetic rows, {args.queries} queries, k=10, "
            f"{args.threads} threads"
        )
        print(
            row(
                "method",
                "search setting",
                "build",
                "queries/s wall / CPU-time × cores",
                "recall@10",
            )
        )
        section_libraries(emb.latent, args.compare_rows, args.queries, args.threads)
    header = row(
        "index",
        "rows",
        "build",
        "size on disk",
        "load",
        "queries/s k=10",
        "recall@10 vs exact",
        "exact queries/s",
        "peak RSS",
    )
    if "real" in args.sections:
        print("\n" + header)
        bench_index("BM5 latents, HNSW", emb, noisy(emb.latent, args.queries, rng), args.threads)
    if "synthetic" in args.sections:
        x = emb.latent
        base = noisy(x, args.synthetic_rows, rng)
        ident = emb.identity.take(rng.integers(0, len(emb), args.synthetic_rows))
        synth = Embeddings(ident, base, emb.weights_name, emb.weights_sha256)
        print("\n" + header)
        bench_index(
            "synthetic (real + noise), HNSW", synth, noisy(x, args.queries, rng), args.threads
        )
    if "quality" in args.sections:
        print(
            "\n"
            + row(
                "distance on", "data", "held-out queries", "same residue type in top 10", "chance"
            )
        )
        section_quality(emb, args.structures, args.l0_structures, args.queries)


if __name__ == "__main__":
    main()
