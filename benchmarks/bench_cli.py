"""The `holoprot` command as a user runs it: a fresh process per run, timed from outside.

Usage:
    python benchmarks/bench_cli.py [--structures ITEMS...] [--max-files 60] [--repeats 2]
        [--cases zernike,embed,small,memory,help] [--compete] [--workers default,0]

Cases (each printed as Markdown table rows):

* ``help``: ``holoprot --help`` and ``holoprot zernike --help``, wall seconds.
* ``zernike``: ``holoprot zernike @list -o out.parquet`` on the first `--max-files` files,
  and ``-o FOLDER`` (a dataset), for each `--workers` value.
* ``embed``: ``holoprot embed @list -o out.parquet`` (default weights, CPU) likewise.
* ``small``: ``holoprot embed examples/structures/1hvr.pdb`` (one small file), after a warm-up run.
* ``memory``: peak RSS of ``holoprot zernike`` on the first 15 files and on 4 copies of each
  (hard links under other names, so inputs are not de-duplicated): flat means memory does not
  grow with the number of inputs.

Residues/s = rows written / wall seconds of the whole command (start-up, imports, weights and
writing included). CPU seconds (user + sys of the process and its children, from ``wait4``) are
printed too: on a shared machine wall time measures the share of the CPUs the run got, CPU time
the work it did. ``--compete`` runs one CPU-bound competitor process (a Python busy loop)
beside every run.
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

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, cpu_model, row, structure_files  # noqa: E402


def run(args: list[str], out: Path | None = None) -> dict:
    """Run `python -m holoprot ARGS` in a fresh process; wall, CPU, peak RSS, rows and size."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "holoprot", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"holoprot {' '.join(args)} failed:\n{stderr}")
    result = {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
    }
    if out is not None:
        files = sorted(out.glob("part-*.parquet")) if out.is_dir() else [out]
        result["rows"] = sum(pq.read_metadata(f).num_rows for f in files)
        result["mb"] = sum(f.stat().st_size for f in files) / 1e6
    return result


def median_run(args: list[str], out: Path | None, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        if out is not None and out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        runs.append(run(args, out))
    runs.sort(key=lambda r: r["wall"])
    return runs[len(runs) // 2]


def print_result(what: str, inputs: str, r: dict) -> None:
    rate = f"{r['rows'] / r['wall']:,.0f}" if "rows" in r else "-"
    print(
        row(
            what,
            inputs,
            f"{r['wall']:.2f}",
            f"{r['cpu']:.2f}",
            r.get("rows", "-"),
            rate,
            f"{r['mb']:.1f}" if "mb" in r else "-",
            f"{r['rss_mb']:.0f}",
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="*", default=None)
    parser.add_argument("--max-files", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", default="help,zernike,embed,small,memory")
    parser.add_argument("--workers", default="default")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--compete", action="store_true")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    files = structure_files(args.structures, args.max_files)
    tmp = Path(tempfile.mkdtemp(prefix="holoprot-bench-cli-"))
    listing = tmp / "list.txt"
    listing.write_text("\n".join(files) + "\n")
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, {len(files)} files, {time.strftime('%F %T')}")
    competitor = None
    if args.compete:
        spin = "while True: pass"
        competitor = subprocess.Popen([sys.executable, "-c", spin])
    try:
        print("| command | inputs | wall s | CPU s | residues | residues/s | MB | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        if "help" in cases:
            for argv in (["--help"], ["zernike", "--help"]):
                print_result(f"holoprot {' '.join(argv)}", "-", median_run(argv, None, 3))
        workers = args.workers.split(",")
        inputs = f"{len(files)} files"
        if "zernike" in cases:
            for w in workers:
                extra = [] if w == "default" else ["--workers", w]
                for out in (tmp / "z.parquet", tmp / "zdir"):
                    r = median_run(
                        ["zernike", f"@{listing}", "-o", str(out), *extra], out, args.repeats
                    )
                    print_result(f"zernike -o {out.name} --workers {w}", inputs, r)
        if "embed" in cases:
            for w in workers:
                extra = [] if w == "default" else ["--workers", w]
                out = tmp / "e.parquet"
                cmd = ["embed", f"@{listing}", "-o", str(out), "--weights", args.weights, *extra]
                print_result(f"embed --workers {w}", inputs, median_run(cmd, out, args.repeats))
        if "small" in cases:
            out = tmp / "small.parquet"
            cmd = ["embed", str(REPO / "examples" / "structures" / "1hvr.pdb"), "-o", str(out)]
            run([*cmd, "--weights", args.weights], out)  # warm-up: caches, page cache
            r = median_run([*cmd, "--weights", args.weights], out, 3)
            print_result("embed (warm)", "examples/structures/1hvr.pdb", r)
        if "memory" in cases:
            base = files[:15]
            copies = tmp / "copies"
            copies.mkdir()
            four = []
            for k in range(4):
                for f in base:
                    link = copies / f"c{k}_{Path(f).name}"
                    try:
                        os.link(f, link)
                    except OSError:
                        shutil.copy(f, link)
                    four.append(str(link))
            for name, paths in (("1x", base), ("4x", four)):
                lst = tmp / f"{name}.txt"
                lst.write_text("\n".join(paths) + "\n")
                out = tmp / f"m{name}.parquet"
                r = run(["zernike", f"@{lst}", "-o", str(out)], out)
                print_result(f"zernike peak memory {name}", f"{len(paths)} files", r)
    finally:
        if competitor is not None:
            competitor.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
