"""The overhead of the Ray engine: `holoprot embed --engine ray` on a local Ray cluster against the
single-process command, on the same files, and the peak memory of each.

Both run as fresh ``holoprot embed`` processes (``python -m holoprot``), timed by wall clock, so
start-up is included: for Ray that is starting the local cluster (raylet, GCS, workers), the
encoder actors' model loading and numba's cache loading in every worker process. Memory is
sampled every 0.2 s over the command's whole process tree (with Ray: the raylet, the GCS and every
worker): the peak of the summed RSS (an upper bound, since pages shared between processes, the
object store's above all, are counted once per process) and the largest single process.

Inputs: the first ``--max-files`` (default 60) files matching ``--pattern`` (default ``*_u.pdb``,
BM5's unbound structures) in ``--corpus`` (default ``data/structures-matched``), sorted. One
untimed warm-up of each engine on 4 of the files, then ``--repeats`` timed runs; figures are the
median. The Ray output is checked against the single-process file: same rows, and the largest
latent difference relative to the largest |latent| is printed.

    python benchmarks/bench_ray.py [--corpus DIR] [--max-files 60] [--weights default]
        [--repeats 1] [--threads 1]

Prints Markdown table rows for benchmarks/RESULTS.md. Timings are not checked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import DEFAULT_CORPUS, REPO, cpu_model, row

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> list[int]:
    """RSS in bytes of `root` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            rss[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * PAGE
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return [rss[p] for p in tree if p in rss]


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, peak summed RSS MB, peak single-process RSS MB) of `cmd` and its descendants."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        total = single = 0.0
        while proc.poll() is None:
            rss = _tree_rss(proc.pid)
            total, single = max(total, sum(rss)), max(single, max(rss, default=0))
            time.sleep(0.2)
        wall = time.perf_counter() - start
        log.seek(0)
        err = log.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, total / 2**20, single / 2**20


def latents_by_source(table: pa.Table) -> dict[str, np.ndarray]:
    out = {}
    for source in table.column("source_path").unique().to_pylist():
        rows = table.filter(pa.compute.equal(table.column("source_path"), source))
        out[source] = np.stack(rows.column("latent").to_numpy(zero_copy_only=False))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--pattern", default="*_u.pdb")
    p.add_argument("--max-files", type=int, default=60)
    p.add_argument("--weights", default="default")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="OMP/NUMBA threads per process")
    args = p.parse_args()

    files = sorted(str(f) for f in args.corpus.glob(args.pattern))[: args.max_files]
    if not files:
        raise SystemExit(f"no {args.pattern} in {args.corpus}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    env["NUMBA_NUM_THREADS"] = str(args.threads)
    base = [sys.executable, "-m", "holoprot", "embed", "--weights", args.weights]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        lists = {}
        for name, chosen in (("warm", files[:4]), ("all", files)):
            lists[name] = tmp / f"{name}.txt"
            lists[name].write_text("\n".join(chosen) + "\n")

        def single(name: str, i: int) -> list[str]:
            return [
                *base,
                f"@{lists[name]}",
                "-o",
                str(tmp / f"s-{name}{i}.parquet"),
                "--device",
                "cpu",
            ]

        def ray(name: str, i: int) -> list[str]:
            return [*base, f"@{lists[name]}", "-o", str(tmp / f"r-{name}{i}"), "--engine", "ray"]

        results = {}
        for engine, cmd in (("single process", single), ("Ray local cluster", ray)):
            measure(cmd("warm", 0), env)
            runs = [measure(cmd("all", i), env) for i in range(args.repeats)]
            results[engine] = runs
        reference = pq.read_table(tmp / "s-all0.parquet")
        got = pq.read_table(tmp / "r-all0")
        residues = reference.num_rows
        assert got.num_rows == residues, (got.num_rows, residues)
        a, b = latents_by_source(got), latents_by_source(reference)
        scale = max(np.abs(v).max() for v in b.values())
        diff = max(np.abs(a[s] - b[s]).max() for s in b) / scale

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; {len(files)} files, {residues} residues")
    print(f"largest latent difference, Ray vs single process: {diff:.2e} of the largest |latent|")
    for engine, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        print(
            row(
                f"holoprot embed, {engine}, cpu",
                f"{len(files)} BM5 {args.pattern} files, {residues} residues",
                f"{residues / wall:,.0f} residues/s ({len(files) / wall:.2f} files/s), {wall:.1f} s"
                f" wall incl. start-up; peak RSS {max(r[1] for r in runs):,.0f} MB summed over"
                f" the process tree, {max(r[2] for r in runs):,.0f} MB largest process",
            )
        )


if __name__ == "__main__":
    main()
