"""Parquet codec and row-group size for holoprot's outputs: write time, size and read time.

Usage: python benchmarks/bench_output.py TABLE.parquet [--out DIR] [--repeat 3]

TABLE is a `holoprot zernike` or `holoprot embed` output (its vector column is measured as it
is). Each variant is written with `pyarrow.parquet.ParquetWriter` (as `holoprot.io.output` does)
and read back whole with `pyarrow.parquet.read_table`; times are the median of `--repeat` runs,
as CPU seconds of this process (`time.process_time`, all threads) and wall seconds, so that a
busy shared machine still gives comparable figures. Prints Markdown table rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

VARIANTS: list[tuple[str, dict]] = [
    ("none", {"compression": "none"}),
    ("snappy (pyarrow default)", {"compression": "snappy"}),
    ("lz4", {"compression": "lz4"}),
    ("zstd 1", {"compression": "zstd", "compression_level": 1}),
    ("zstd 3", {"compression": "zstd", "compression_level": 3}),
    ("plain floats + zstd 1", {"compression": "zstd", "compression_level": 1, "plain": True}),
    ("byte_stream_split + lz4", {"compression": "lz4", "bss": True}),
    ("byte_stream_split + zstd 1", {"compression": "zstd", "compression_level": 1, "bss": True}),
    ("byte_stream_split + zstd 3", {"compression": "zstd", "compression_level": 3, "bss": True}),
]


def _timed(fn, *args) -> tuple[float, float]:  # noqa: ANN001
    c0, w0 = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - c0, time.perf_counter() - w0


def _write(table: pa.Table, path: Path, rows: int, opts: dict) -> None:
    with pq.ParquetWriter(path, table.schema, **opts) as writer:
        writer.write_table(table, row_group_size=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/holoprot-bench-output"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--row-groups", default="512,2048,8192")
    args = parser.parse_args()
    table = pq.read_table(args.table)
    vector = [f.name for f in table.schema if pa.types.is_fixed_size_list(f.type)]
    args.out.mkdir(parents=True, exist_ok=True)
    mb = table.nbytes / 1e6
    print(f"{args.table.name}: {table.num_rows} rows, {mb:.1f} MB in memory, vectors {vector}")
    print("| codec | rows/group | MB | write CPU s | write wall s | read CPU s | read wall s")
    print("|---|---|---|---|---|---|---|")
    groups = [int(g) for g in args.row_groups.split(",")]
    runs = [(name, opts, 2048) for name, opts in VARIANTS]
    runs += [(VARIANTS[7][0], VARIANTS[7][1], g) for g in groups if g != 2048]
    for name, opts, rows in runs:
        opts = dict(opts)
        if opts.pop("bss", False):
            opts["use_byte_stream_split"] = [f"{v}.list.element" for v in vector]
        if opts.pop("plain", False) or "use_byte_stream_split" in opts:
            opts["use_dictionary"] = [f.name for f in table.schema if f.name not in vector]
        path = args.out / "variant.parquet"
        w = [_timed(_write, table, path, rows, opts) for _ in range(args.repeat)]
        r = [_timed(pq.read_table, path) for _ in range(args.repeat)]
        size = path.stat().st_size / 1e6
        wc, ww = (statistics.median(x) for x in zip(*w, strict=True))
        rc, rw = (statistics.median(x) for x in zip(*r, strict=True))
        print(f"| {name} | {rows} | {size:.1f} | {wc:.2f} | {ww:.2f} | {rc:.2f} | {rw:.2f}")


if __name__ == "__main__":
    main()
