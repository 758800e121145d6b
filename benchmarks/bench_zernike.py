"""Throughput and memory of the Zernike projection: projection alone, and files → coefficients.

Three parts (``--parts a,b,c``):

a. Projection alone: neighbourhoods/s of ``ZernikeBasis().project_neighborhoods(nbh,
   backend=--backend)`` under ``torch.no_grad()`` (``auto``: the numba kernel on CPU).
   Neighbourhoods are pre-extracted from real structure files with ``read_structure`` +
   ``extract_neighborhoods(radius 10 Å)`` (not timed). Batches: one call per
   whole structure, and fixed chunks of ``--chunks`` neighbourhoods cut from all structures
   concatenated (the pool is repeated when it is smaller than a chunk; values do not change the
   work). One timed run projects every batch once; the figure is neighbourhoods / median run time
   over ``--repeats`` runs after one untimed warm-up run (``time.perf_counter``; CUDA synchronised
   before each clock read); the process's CPU time (all its threads) over the same runs gives a
   second figure, less sensitive to other programs on the machine (neighbourhoods per
   CPU-second, i.e. per busy core; threads that spin while waiting count too). Mean atoms
   per neighbourhood (all atoms, and atoms in the C/N/O/S channels) are printed; BASELINE.md's
   2fe3 had 130.6.

   Achieved GFLOP/s of the CPU kernel (`holoprot.zernike._kernel_cpu`) count its two matrix
   products, a multiply-add as 2 FLOP: per atom in a channel 2·Σ_i k_end[i] (the moments; 854
   at the defaults), per non-empty (neighbourhood, channel) the radial change of basis
   2·Σ_i (i+1)·k_end[i] (4,180), k_end[i] the harmonics (l, m) with a radial order n = l + 2i; the
   per-atom elementwise work (radius, weight, Chebyshev and harmonic recurrences, about 250 FLOP)
   is not counted. They are set against measured 4096 × 4096 × 4096 fp32 and fp64 matmuls
   (torch) on the same threads.

   ``--compare-base PATH`` times, in two fresh processes with the same neighbourhoods, batches and
   timing code, the projection of the code at PATH (``PYTHONPATH=PATH``, e.g. a git worktree of
   an earlier commit) and of this checkout; it prints both rates and their ratio.

b. Files → coefficients: residues/s of ``holoprot.zernike.pipeline.iter_projected(paths,
   ProjectionSettings(), workers=W)`` for each W in ``--workers``, consuming (and dropping) every
   result. Each run is a fresh Python process (this script in child mode), so the wall-clock
   figure includes interpreter start-up, imports, the worker pool's start-up (spawn) and its
   shutdown; the in-process figure (pool start-up included, interpreter start-up not) is printed
   beside it. Median over ``--repeats`` runs after one untimed warm-up run per W.

c. Peak memory: peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) of the process that runs
   ``iter_projected`` and the largest of its worker processes (``RUSAGE_CHILDREN``), for the file
   list repeated 1×, 2×, 4× (``--memory-multipliers``), one fresh process each, W in
   ``--memory-workers``. Flat numbers across multipliers show memory does not grow with the number
   of inputs.

Structure files: every structure file under ``--structures`` (files, folders, globs, as the CLI
takes them), sorted, first ``--max-files`` (0 = all). Default ``data/structures-matched`` (the
unpacked BM5 corpus, git-ignored) if present, else ``examples/structures/`` +
``tests/data/structures/``.
Files that fail to parse are counted and skipped.

    python benchmarks/bench_zernike.py [--structures DIR ...] [--max-files 50] [--repeats 3]
        [--threads 2] [--device cpu|cuda] [--workers 0,1,2] [--chunks 100,10000]
        [--memory-multipliers 1,2,4] [--memory-workers 2] [--parts a,b,c]
        [--compare-base /work/base]

Every result is also printed as a Markdown table row for benchmarks/RESULTS.md. Timings are not
checked against anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import REPO, cpu_model, default_structures, mb, row, structure_files

REFERENCE = {
    "whole": "537–561 (HV encoder, whole protein, 2fe3)",
    "100": "575–578 (HV encoder, batches of 100, 2fe3)",
    "chunk": "575–578 (batches of 100, 2fe3)",
    "files": "219–220 (HV parse → nbhd → zernikegrams, 2fe3); ZG 216–229",
}
TARGET_PROJECTION = "≥ 10,000 nbhd/s"
TARGET_FILES = "≥ 3,000 residues/s"


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _median_seconds(
    fn: Callable[[], None], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median wall time and median process CPU time of `repeats` calls of fn after one untimed
    warm-up call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def matmul_gflops(dtype: torch.dtype, n: int = 4096) -> float:
    """GFLOP/s of the best of 3 ``n × n × n`` CPU matmuls (after one warm-up)."""
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


# ---- part a: projection alone ------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The fields of a `Neighborhoods` batch that ``project_neighborhoods`` reads: offsets (M + 1,),
    coords (A, 3) Å, element (A,) symbols."""

    offsets: np.ndarray
    coords: np.ndarray
    element: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _concat(parts: list[Batch]) -> Batch:
    """One ragged batch holding all neighbourhoods of `parts`, in order."""
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for nbh in parts:
        offsets.append(nbh.offsets[1:] + base)
        base += int(nbh.offsets[-1])
    return Batch(
        offsets=np.concatenate(offsets),
        coords=np.concatenate([n.coords for n in parts]),
        element=np.concatenate([n.element for n in parts]),
    )


def _slice(nbh: Batch, start: int, stop: int) -> Batch:
    """Neighbourhoods start…stop−1 of a ragged batch, as their own batch."""
    a0, a1 = int(nbh.offsets[start]), int(nbh.offsets[stop])
    return Batch(nbh.offsets[start : stop + 1] - a0, nbh.coords[a0:a1], nbh.element[a0:a1])


def batch_sets(structures: list[Batch], chunks: list[int]) -> list[tuple[str, list[Batch], str]]:
    """(label, batches, note) per timed case: one batch per structure, then fixed chunks of each
    size cut from all structures concatenated (the pool repeated when smaller than a chunk)."""
    pool = _concat(structures)
    sets = [("whole structure per call", structures, "")]
    for size in chunks:
        source, note = pool, ""
        if len(pool) < size:
            source = _concat([pool] * -(-size // len(pool)))
            note = f", pool of {len(pool):,} repeated"
        batches = [_slice(source, i * size, (i + 1) * size) for i in range(len(source) // size)]
        sets.append((f"chunks of {size:,}", batches, note))
    return sets


def time_projection(
    structures: list[Batch], chunks: list[int], repeats: int, device: torch.device, backend: str
) -> list[dict]:
    """Per case of `batch_sets`: neighbourhoods per run, median wall and CPU seconds per run."""
    from holoprot.zernike.basis import ZernikeBasis

    basis = ZernikeBasis()
    results = []
    for label, batches, note in batch_sets(structures, chunks):

        def fn(batches: list[Batch] = batches) -> None:
            with torch.no_grad():
                for b in batches:
                    basis.project_neighborhoods(b, device=device, backend=backend)

        wall, cpu = _median_seconds(fn, repeats, device)
        n = sum(len(b) for b in batches)
        results.append({"label": label, "note": note, "n": n, "wall": wall, "cpu": cpu})
    return results


def kernel_flops(basis: object, pool: Batch) -> float:
    """FLOP of the CPU kernel's two matrix products over `pool` (module docstring, part a)."""
    k_end = basis._cpu_kernel_tables()["k_end"]
    per_atom = 2 * float(np.sum(k_end))
    per_group = 2 * float(np.sum((np.arange(len(k_end)) + 1) * k_end))
    channel = basis.channel_index(pool.element)
    seg = np.repeat(np.arange(len(pool)), np.diff(pool.offsets))[channel >= 0]
    groups = len(np.unique(seg * len(basis.channels) + channel[channel >= 0]))
    return per_atom * len(seg) + per_group * groups


def child_time_projection(spec_path: str) -> None:
    """Child mode of --compare-base: time the projection of the saved neighbourhoods with whatever
    `holoprot` this process imports, and write a JSON result."""
    import holoprot

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    with np.load(spec["neighbourhoods"], allow_pickle=False) as saved:
        structures = [
            Batch(saved[f"offsets{i}"], saved[f"coords{i}"], saved[f"element{i}"])
            for i in range(spec["n_structures"])
        ]
    results = time_projection(
        structures, spec["chunks"], spec["repeats"], torch.device("cpu"), spec["backend"]
    )
    Path(spec["result"]).write_text(json.dumps({"holoprot": holoprot.__file__, "cases": results}))


def compare_base(
    structures: list[Batch], args: argparse.Namespace, rows: list[str], tmp: Path
) -> None:
    """Time the projection of --compare-base's code and of this checkout, each in a fresh
    process on the same neighbourhoods; print both rates and their ratio."""
    saved = tmp / "neighbourhoods.npz"
    arrays = {}
    for i, s in enumerate(structures):
        arrays |= {f"offsets{i}": s.offsets, f"coords{i}": s.coords, f"element{i}": s.element}
    np.savez(saved, **arrays)
    runs = {}
    for name, path in (("base", args.compare_base), ("this", str(REPO))):
        spec, out = tmp / f"spec_{name}.json", tmp / f"result_{name}.json"
        spec.write_text(
            json.dumps(
                {
                    "neighbourhoods": str(saved),
                    "n_structures": len(structures),
                    "chunks": _int_list(args.chunks),
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "backend": args.backend,
                    "result": str(out),
                }
            )
        )
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, __file__, "--child-projection", str(spec)]
        subprocess.run(cmd, check=True, env=env)
        runs[name] = json.loads(out.read_text())
    print(
        f"   --compare-base (cpu, backend {args.backend}, fresh process each):"
        f" base {runs['base']['holoprot']}, this {runs['this']['holoprot']}"
    )
    for base, this in zip(runs["base"]["cases"], runs["this"]["cases"], strict=True):
        wall0, wall1 = base["n"] / base["wall"], this["n"] / this["wall"]
        cpu0, cpu1 = base["n"] / base["cpu"], this["n"] / this["cpu"]
        text = (
            f"{wall1:,.0f} nbhd/s (base {wall0:,.0f}, {wall1 / wall0:.2f}×); per CPU-second"
            f" {cpu1:,.0f} (base {cpu0:,.0f}, {cpu1 / cpu0:.2f}×)"
        )
        print(f"   {this['label']}: {text}")
        rows.append(
            row(
                f"projection vs {args.compare_base}, {this['label']} (cpu, {args.backend})",
                f"{len(structures)} files, {this['n']:,} nbhd per run{this['note']}",
                text,
                "—",
                "≥ 2× base",
            )
        )


def part_a(paths: list[str], args: argparse.Namespace, rows: list[str], tmp: Path) -> None:
    from holoprot.errors import HoloprotError
    from holoprot.io.structure import read_structure
    from holoprot.zernike.basis import ZernikeBasis
    from holoprot.zernike.neighborhoods import extract_neighborhoods

    device = torch.device(args.device)
    basis = ZernikeBasis()
    structures, failed = [], 0
    t0 = time.perf_counter()
    for p in paths:
        try:
            nbh = extract_neighborhoods(read_structure(p), basis.rcut)
        except HoloprotError:
            failed += 1
            continue
        if len(nbh):
            structures.append(Batch(nbh.offsets, nbh.coords, nbh.element))
    t_extract = time.perf_counter() - t0
    if not structures:
        print("a. no neighbourhoods extracted; skipping part a")
        return
    pool = _concat(structures)
    n_pool = len(pool)
    in_channel = basis.channel_index(pool.element) >= 0
    seg = np.repeat(np.arange(n_pool), np.diff(pool.offsets))
    mean_all = float(np.diff(pool.offsets).mean())
    mean_ch = float(np.bincount(seg[in_channel], minlength=n_pool).mean())
    inputs = f"{len(structures)} files, {n_pool:,} nbhd, {mean_all:.1f} atoms/nbhd"
    print(
        f"a. projection alone ({device}, backend {args.backend}, {args.threads} threads):"
        f" {len(structures)} structures"
        f" ({failed} failed), {n_pool:,} neighbourhoods; mean atoms per neighbourhood"
        f" {mean_all:.1f} (in C/N/O/S channels {mean_ch:.1f}); extraction took {t_extract:.1f} s"
        " (not timed)"
    )
    kernel = device.type == "cpu" and args.backend in ("auto", "numba")
    flop_per_nbhd = kernel_flops(basis, pool) / n_pool if kernel else 0.0
    if kernel:
        peaks = {d: matmul_gflops(d) for d in (torch.float32, torch.float64)}
        print(
            f"   kernel FLOP (matrix products): {flop_per_nbhd:,.0f} per neighbourhood"
            f" ({flop_per_nbhd / mean_ch:,.0f} per atom in a channel); 4096³ matmul on"
            f" {args.threads} threads: fp32 {peaks[torch.float32]:.0f} GFLOP/s,"
            f" fp64 {peaks[torch.float64]:.0f} GFLOP/s"
        )
    results = time_projection(
        structures, _int_list(args.chunks), args.repeats, device, args.backend
    )
    references = {"whole structure per call": REFERENCE["whole"], "chunks of 100": REFERENCE["100"]}
    for r in results:
        rate, cpu_rate = r["n"] / r["wall"], r["n"] / r["cpu"]
        gflops = f"; {rate * flop_per_nbhd / 1e9:.1f} GFLOP/s" if kernel else ""
        print(
            f"   {r['label']}: {rate:,.0f} nbhd/s ({r['n']:,} nbhd per run, median run"
            f" {r['wall']:.3f} s{r['note']}); {cpu_rate:,.0f} nbhd per CPU-second{gflops}"
        )
        reference = references.get(r["label"], REFERENCE["chunk"])
        rows.append(
            row(
                f"projection, {r['label']} ({device}, {args.backend})",
                f"{inputs}{r['note']}",
                f"{rate:,.0f} nbhd/s{gflops.replace(';', ',')}",
                reference,
                TARGET_PROJECTION,
            )
        )
    if device.type == "cuda":
        print(f"   peak CUDA memory: {torch.cuda.max_memory_allocated(device) / 1024**2:,.0f} MB")
    if args.compare_base:
        compare_base(structures, args, rows, tmp)


# ---- parts b and c: files → coefficients in fresh processes --------------------------------------


def child_project(spec_path: str) -> None:
    """Child mode: run iter_projected over the spec's paths and write a JSON result."""
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    from holoprot.zernike.pipeline import FailedInput, ProjectionSettings, iter_projected

    residues = failed = 0
    start = time.perf_counter()
    for item in iter_projected(spec["paths"], ProjectionSettings(), workers=spec["workers"]):
        if isinstance(item, FailedInput):
            failed += 1
        else:
            residues += len(item.coefficients)
    elapsed = time.perf_counter() - start
    result = {
        "residues": residues,
        "failed": failed,
        "seconds_in_process": elapsed,
        "peak_rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "peak_rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    Path(spec["result"]).write_text(json.dumps(result))


def run_child(paths: list[str], workers: int, threads: int, tmp: Path) -> dict:
    """One fresh `python bench_zernike.py --child SPEC` process; adds its wall time."""
    spec = tmp / "spec.json"
    out = tmp / "result.json"
    out.unlink(missing_ok=True)
    spec.write_text(
        json.dumps({"paths": paths, "workers": workers, "threads": threads, "result": str(out)})
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", str(spec)], check=True, env=env)
    wall = time.perf_counter() - start
    result = json.loads(out.read_text())
    result["seconds_wall"] = wall
    return result


def part_b(paths: list[str], args: argparse.Namespace, rows: list[str], tmp: Path) -> None:
    print(
        f"b. files → coefficients (iter_projected, fresh process per run, {args.threads} threads"
        f" in the main process, 1 per worker): {len(paths)} files"
    )
    for workers in _int_list(args.workers):
        run_child(paths, workers, args.threads, tmp)  # warm-up (file cache, .pyc)
        results = [run_child(paths, workers, args.threads, tmp) for _ in range(args.repeats)]
        residues = results[0]["residues"]
        wall = statistics.median(r["seconds_wall"] for r in results)
        inproc = statistics.median(r["seconds_in_process"] for r in results)
        parent = max(mb(r["peak_rss_self_kb"]) for r in results)
        child = max(mb(r["peak_rss_children_kb"]) for r in results)
        print(
            f"   workers={workers}: {residues / wall:,.0f} residues/s incl. start-up"
            f" ({residues / inproc:,.0f} in process); {residues:,} residues,"
            f" {results[0]['failed']} files failed; median wall {wall:.2f} s;"
            f" peak RSS parent {parent:,.0f} MB, largest child {child:,.0f} MB"
        )
        rows.append(
            row(
                f"files → coefficients, workers={workers}",
                f"{len(paths)} files, {residues:,} residues",
                f"{residues / wall:,.0f} residues/s incl. start-up"
                f" ({residues / inproc:,.0f} in process)",
                REFERENCE["files"],
                TARGET_FILES,
            )
        )


def part_c(paths: list[str], args: argparse.Namespace, rows: list[str], tmp: Path) -> None:
    print("c. peak RSS vs number of input files (one fresh process per line)")
    for workers in _int_list(args.memory_workers):
        peaks = []
        for mult in _int_list(args.memory_multipliers):
            r = run_child(paths * mult, workers, args.threads, tmp)
            parent, child = mb(r["peak_rss_self_kb"]), mb(r["peak_rss_children_kb"])
            peaks.append((mult, parent, child))
            print(
                f"   workers={workers}, {mult}× ({len(paths) * mult} files, {r['residues']:,}"
                f" residues): peak RSS parent {parent:,.0f} MB, largest child {child:,.0f} MB;"
                f" {r['residues'] / r['seconds_wall']:,.0f} residues/s incl. start-up"
            )
        cells = "; ".join(f"{m}×: {p:,.0f} / {c:,.0f}" for m, p, c in peaks)
        growth = (peaks[-1][1] + peaks[-1][2]) / max(1e-9, peaks[0][1] + peaks[0][2])
        print(f"   largest/smallest list: {growth:.2f}× (parent + child peak)")
        rows.append(
            row(
                f"files → coefficients peak RSS, workers={workers} (parent / largest child, MB)",
                f"{len(paths)} files × {','.join(str(m) for m, _, _ in peaks)}",
                cells,
                "n/a (HV all_at_once: 8.4 GB for 6 PDBs)",
                "flat in the number of files",
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="+", help="files, folders, globs or @lists")
    parser.add_argument("--max-files", type=int, default=50, help="0 = all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="part a only: cpu or cuda")
    parser.add_argument("--backend", default="auto", help="part a only: auto, numba (CPU) or torch")
    parser.add_argument("--workers", default="0,1,2", help="part b worker counts")
    parser.add_argument("--chunks", default="100,10000", help="part a chunk sizes")
    parser.add_argument("--memory-multipliers", default="1,2,4")
    parser.add_argument("--memory-workers", default="2", help="part c worker counts")
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument(
        "--compare-base", metavar="PATH", help="part a: also time the code at PATH (PYTHONPATH)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-projection", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_project(args.child)
        return
    if args.child_projection:
        child_time_projection(args.child_projection)
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.compare_base and (args.device != "cpu" or not Path(args.compare_base).is_dir()):
        parser.error("--compare-base needs --device cpu and a folder holding a holoprot package")
    torch.set_num_threads(args.threads)
    paths = structure_files(args.structures, args.max_files)
    if not paths:
        parser.error("no structure files found")
    print(
        f"# bench_zernike: {cpu_model()}, {os.cpu_count()} CPUs,"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads; {len(paths)} files"
        f" from {' '.join(args.structures or default_structures())}"
    )
    parts = set(args.parts.split(","))
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_zernike_") as tmp:
        if "a" in parts:
            part_a(paths, args, rows, Path(tmp))
        if "b" in parts:
            part_b(paths, args, rows, Path(tmp))
        if "c" in parts:
            part_c(paths, args, rows, Path(tmp))
    driver = mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"peak RSS of this driver process (part a data included): {driver:,.0f} MB")
    print("\nMarkdown rows (measurement | inputs | holoprot | reference | target):")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
